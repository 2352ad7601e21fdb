"""The analytics marts: the dbt project at the top of the checkout (``dbt/``), as Dagster assets."""
