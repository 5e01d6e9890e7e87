"""Imported first by every module that imports Prefect: Prefect makes PREFECT_HOME as it is imported, but not
its parents, and without it its temporary API never starts (a flow called from Python waited out the
startup timeout, then failed). So the data home's `prefect/` folder is made here, with its parents. The CLI's
read-only commands never import this module, so they still write nothing."""

from tasks.core.settings import prepare_prefect_home

prepare_prefect_home()
