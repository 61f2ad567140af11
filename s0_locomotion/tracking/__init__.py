"""S0 whole-body tracking: imitation rewards, the tracking environment, PPO training, the controller."""
