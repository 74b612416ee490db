#!/usr/bin/env bash
# Print the path of a Python the project can use (3.12 or 3.13), or explain what to
# install and exit 1. PATH first, then pyenv's installed versions (pyenv's shims
# answer only for the selected version, so the interpreters are looked up directly).
#
# Why 3.12+: rasterio's 1.5 wheels (GDAL 3.12 with libjpeg-turbo and libdeflate)
# exist for Python 3.12 and newer only; on 3.11 pip stops at rasterio 1.4.4.
set -euo pipefail

MIN_MINOR=12
MAX_MINOR=13

usable() {
    "$1" -c "import sys, venv, ensurepip; sys.exit(not (sys.version_info[0] == 3 and $MIN_MINOR <= sys.version_info[1] <= $MAX_MINOR))" 2>/dev/null
}

candidates=()
for name in python3.12 python3.13 python3; do
    if path="$(command -v "$name" 2>/dev/null)"; then candidates+=("$path"); fi
done
pyenv_root="${PYENV_ROOT:-$HOME/.pyenv}"
for minor in $(seq "$MIN_MINOR" "$MAX_MINOR"); do
    # Newest patch release of each minor version first.
    for path in $(ls -d "$pyenv_root"/versions/3."$minor".*/bin/python3 2>/dev/null | sort -rV); do
        candidates+=("$path")
    done
done

for candidate in "${candidates[@]}"; do
    if usable "$candidate"; then
        echo "$candidate"
        exit 0
    fi
done

cat >&2 <<EOF
geo_platform needs Python 3.$MIN_MINOR or 3.$MAX_MINOR (with venv), and none was found on PATH
or among pyenv's versions ($pyenv_root/versions). Install one, for example:
    pyenv install 3.12        # or: apt-get install python3.12 python3.12-venv
or name one explicitly:  make demo PYTHON=/path/to/python3.12
EOF
exit 1
