"""Image classification (ImageNet-LT lists, digits-lt, shapes-lt): data, models, stage-2 features, metrics."""
