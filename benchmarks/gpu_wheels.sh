#!/usr/bin/env bash
# Fill ./.whl with the wheels that benchmarks/gpu_check.sh installs on a lent CUDA machine, whose
# image (Python 3.12, its own torch) has no registry and lacks mlflow-skinny, sqlalchemy, alembic,
# av, pydantic, optuna and pycocotools. The versions are those of this checkout's venv; pip
# resolves their needs for CPython 3.12 on manylinux x86-64 and downloads each one (numpy is
# left out: the image has it, and it is the largest), and writes the pins to .whl/requirements.txt. ~57 MB; .whl must be git-ignored
# (`echo /.whl/ >> .git/info/exclude`) and named in the device call's carry.
#
#   PY312=/path/to/python3.12 bash benchmarks/gpu_wheels.sh      # run in the repository root
set -euo pipefail
py312=${PY312:-python3.12}
venv_py=${VENV_PY:-.venv/bin/python}
names=(mlflow-skinny sqlalchemy alembic av pydantic optuna pycocotools)
pins=()
for n in "${names[@]}"; do
    v=$("$venv_py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$n")
    pins+=("$n==$v")
done
plat=(--only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
work=$(mktemp -d)
"$py312" -m pip install -q --dry-run --ignore-installed --report "$work/report.json" --target "$work/t" \
    "${plat[@]}" "${pins[@]}"
"$py312" -c "
import json, sys
r = json.load(open(sys.argv[1]))
print('\n'.join(f\"{i['metadata']['name']}=={i['metadata']['version']}\" for i in r['install']
                if i['metadata']['name'].lower() != 'numpy'))" "$work/report.json" >"$work/reqs.txt"
rm -rf .whl && mkdir .whl
"$py312" -m pip download -q --no-deps -d .whl "${plat[@]}" -r "$work/reqs.txt"
printf '%s\n' "${pins[@]}" >.whl/requirements.txt  # what gpu_check.sh installs (their needs resolve from .whl)
rm -rf "$work"
echo "$(ls .whl/*.whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl for: ${pins[*]}"
