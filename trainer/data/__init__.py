"""From files on disk to batches: the data side of training and evaluation.

``dataset`` finds a labelled face dataset (class folders, splits, CSV labels); ``images``
decodes its files into the model's input format, as the contract prescribes; ``splits``
turns a scanned dataset into a run's decoded train/validation/test arrays (or an
evaluation set); ``input_pipeline`` makes shuffled, augmented tf.data pipelines of them.
"""
