"""Studies that are not sweeps, one module each, and the `study` command that runs them.

    python -m lossbench study toy_neuron --out outputs/study/toy_neuron

  toy_neuron             one sigmoid neuron learning (Nielsen ch. 3): quadratic vs cross-entropy
  nielsen_ch5_gradients  |dC/db| per hidden layer at initialization (ch. 5), over seeds
  hidden_saturation      hidden-layer saturation during training (Glorot & Bengio 2010), for the verdict
  command                `python -m lossbench study NAME`: settings from experiments/NAME.yaml, outputs,
                         provenance, and each claim (lossbench.claims) printed and written to claims.csv
"""
