from core.data.vocab import PAD, UNK, Vocab, flip_words, tokenize


def test_tokenize_lowercases_and_drops_punctuation():
    assert tokenize("The RED ball, on the left!") == ["the", "red", "ball", "on", "the", "left"]


def test_build_keeps_most_frequent_with_unk_and_deterministic_ties():
    v = Vocab.build(["a b b c", "c c d", "e"], size=3)  # 2 words + <unk>
    assert v.words == ("c", "b")  # c:3, b:2; a, d, e (1 each) fall out
    assert v.encode(["c", "b", "a"], 10) == [2, 3, UNK]
    assert v.num_ids == 4 and PAD == 0


def test_encode_truncates_to_max_tokens():
    v = Vocab.build(["x y z"], size=10)
    assert len(v.encode(["x", "y", "z"], 2)) == 2


def test_flip_swaps_left_and_right():
    assert flip_words(["ball", "on", "the", "left", "right"]) == ["ball", "on", "the", "right", "left"]


def test_save_load_roundtrip(tmp_path):
    v = Vocab.build(["one two two"], size=5)
    v.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == v
