#!/bin/bash
# S0 fine-tuning A/B on a borrowed 16-core machine (README, "S0 on 16 cores"): the committed S0's actor, a
# fresh critic warmed up for 20 iterations, then PPO, on the commanded-path walks (cores 0-7) and on the
# balanced (ZMP-planned) walks (cores 8-15) at once, for SECS seconds each. Needs the wheels in .whl/
# (mujoco, mujoco-core, glfw, omegaconf, rsl-rl-lib, tensordict, pyvers for the machine's Python) and $OUT.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nproc
python3 -c "import mujoco, rsl_rl, omegaconf, tensordict, torch, numpy; print(mujoco.__version__, torch.__version__, numpy.__version__)" || exit 1
python3 scripts/device_s0.py /tmp/smoke.jsonl init=checkpoints/s0/policy.safetensors critic_warmup=1 iterations=1 \
  env.sim.num_envs=16 ppo.steps_per_env=4 out=/tmp/smoke > /tmp/smoke.log 2>&1 || { tail -30 /tmp/smoke.log; exit 1; }
echo smoke ok
SECS=${SECS:-470}
COMMON="init=checkpoints/s0/policy.safetensors critic_warmup=20 iterations=100000 save_every=10 env.sim.num_envs=512 ppo.entropy=0 seed=11"
for arm in plain balanced; do
  if [ $arm = plain ]; then cpus=0-7; bal=false; else cpus=8-15; bal=true; fi
  (timeout -s INT $SECS taskset -c $cpus python3 scripts/device_s0.py $OUT/${arm}_metrics.jsonl $COMMON \
     env.balanced_gait=$bal out=/tmp/$arm > /tmp/$arm.log 2>&1) &
done
wait
for arm in plain balanced; do
  cp /tmp/$arm/policy.safetensors $OUT/${arm}_policy.safetensors; cp /tmp/$arm/policy.json $OUT/${arm}_policy.json
  tail -c 20000 /tmp/$arm.log > $OUT/${arm}.log
done
ls -la $OUT
for arm in plain balanced; do tail -n 1 $OUT/${arm}_metrics.jsonl | cut -c 1-400; done
