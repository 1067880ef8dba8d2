"""`moelab eval RECIPE.yaml [key=value ...] [--shard I/N]`: the command-line face of
`inference.instruments.lm_eval_run`."""

from inference.instruments.recipe_cli import recipe_command

add_arguments, run = recipe_command(
    "eval", schema="inference.instruments.lm_eval_schema:EvalConfig",
    runner="inference.instruments.lm_eval_run:run_eval",
    example="configs/eval/toy.yaml",
    overrides_example="'models=[toy-d64-E8-k2]' limit=50 backend.type=hf data_files.gsm8k.test=FILE")
