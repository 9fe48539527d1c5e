"""Using a registered model: `detector predict` on local files (predict), preparing each image
exactly as training's shards did. Serving and batch scoring belong here too.

May import registry, training, data and the core; never evaluation."""
