"""Training with Lightning: next-base pretraining (``genossm pretrain``) and the scaling driver."""
