#!/usr/bin/env bash
# Install the project into the current Python environment, with the system libraries for headless
# rendering (EGL, OSMesa) and ffmpeg when apt-get is available.
#   ./install.sh          runtime (enough for `humanoid run`)
#   ./install.sh --test   runtime + test tools
set -euo pipefail
cd "$(dirname "$0")"

extra=""
[[ "${1:-}" == "--test" ]] && extra="[test]"

if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p | grep -q "libEGL.so.1" ; then
    sudo_cmd=""
    [[ "$(id -u)" != "0" ]] && sudo_cmd="sudo"
    echo "install.sh: installing libegl1 libosmesa6 libgl1 libegl-mesa0 (headless rendering)"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq libegl1 libegl-mesa0 libgl1 libosmesa6 >/dev/null
fi

# torch first: 2.13.0 is the CPU build this machine kind keeps on disk; any looser request would
# make pip fetch a multi-GB CUDA build.
python -m pip install --quiet "torch==2.13.0"
python -m pip install --quiet -e ".${extra}"
echo "install.sh: done ($(python -c 'import torch, mujoco; print(f"torch {torch.__version__}, mujoco {mujoco.__version__}")'))"
