"""The detector's stages as a Kubeflow Pipelines v2 pipeline. Runs in .venv-kfp (kfp needs
protobuf<7); the stages themselves run in the main environment or the images, through
`python -m components.kfp_stage`.

An entry point: imports no components module (it cannot: .venv-kfp has no TensorFlow), only
shells out to the main environment."""
