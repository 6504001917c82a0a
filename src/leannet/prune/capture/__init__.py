"""Graph capture: trace the model once with torch.fx (`trace`), run the traced graph on the example
inputs while every tensor carries a channel label (`labels`, `unionfind`), let each op say how
labels flow (`opcall`, `tensor_ops`, `view_ops`, and the layer rules in `prune.rules`), and derive
the ChannelGroups (`graph`).

Import the modules themselves (`leannet.prune.capture.graph`): this package imports nothing, so
that the layer rules can use the label helpers while `graph` uses the rules.
"""
