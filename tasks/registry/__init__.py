"""MLflow: tracking runs, registered versions and their aliases, the pyfunc model, plots, and the choice of the
models that serve. Imports core, stores and learning. MLflow is slow to import: modules outside this group
that only sometimes need it import it inside the function that does."""
