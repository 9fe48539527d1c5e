"""Images to shards: decode and guard (images, guard, fit), where the per-file work runs (engine:
a local pool or Ray tasks), validate, sync from S3, shard and
publish, the one TFRecord schema (schema), both readers and the choice between them (reader),
the reader's augmentation (affine, degrade), and the demo data.

May import only the core (config, settings, contracts, wiring, record, cli_support)."""
