"""Digital baselines beside the analog generators: a small DCGAN-style GAN and a VAE of comparable parameter count,
trained on the analog trainers' data and scored with their own-net FID (``spicenet baseline {gan,vae}``).

Modules: ``models`` (the networks, width matching), ``reference`` (what is copied from the compared DTM / AIS
config, and that generator's parameter count), ``flops`` (FLOPs per sample and the assumed energy per FLOP),
``train`` (training, evaluation, run directory: ``spicenet.baselines.train.train``).
"""
