"""`moelab taskloss RECIPE.yaml [key=value ...] [--shard I/N]`: the command-line face of
`inference.instruments.taskloss`."""

from inference.instruments.recipe_cli import recipe_command

add_arguments, run = recipe_command(
    "taskloss", schema="inference.instruments.taskloss_schema:TasklossConfig",
    runner="inference.instruments.taskloss:run_taskloss",
    example="configs/taskloss/toy.yaml", overrides_example="dataset=gsm8k-4shot limit=100 backend.type=hf")
