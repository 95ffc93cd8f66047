"""The synthetic near-twin vehicle benchmark (VeRi-776 layout), for tests, the demo and CPU benchmarks.

Public API::

    from pgan.synth import SynthConfig, generate_synth
    summary = generate_synth("data/synth", SynthConfig(num_train_ids=50, num_test_ids=25))

Modules, in import order (each imports only those above it): ``scene`` (palette,
background, occluders, photometric), ``pen`` (drawing in vehicle coordinates, the
ground-truth boxes and their roles), ``parts`` (identity parts, distractors),
``realism`` (the optional texture, reflections, blur, JPEG, night and clutter),
``render`` (bodies, one image), ``world`` (families, cameras, identities),
``generate`` (the config and the writer of the dataset folder).
"""

from pgan.synth.generate import (
    GENERATOR_VERSION,
    SynthConfig,
    check_config,
    generate_synth,
    synth_config_from_dict,
)

__all__ = ["GENERATOR_VERSION", "SynthConfig", "check_config", "generate_synth", "synth_config_from_dict"]
