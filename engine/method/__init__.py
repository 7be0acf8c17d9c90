"""The method: backbones and their weights, features, proposals, clustering, heads, instances."""
