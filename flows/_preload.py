"""Imported once by the audit's fork server (flows/runner.py): everything a worker needs before
its first task, so that no worker pays for it.

Besides the task engine and the analysis module, this loads Prefect's installed collections
(``prefect.plugins.load_prefect_collections``): the task engine does so lazily on a worker's first
task (looking up block types), and with prefect-dask installed that imports dask, distributed and
tornado: ~0.6 s per worker, measured.
"""

from flows.lifetime import die_with_parent

die_with_parent()  # the fork server: killed with the audit that started it (flows/lifetime.py)

import prefect.plugins  # noqa: E402
import prefect.task_engine  # noqa: F401,E402
import prefect.task_runners  # noqa: F401,E402

import tasks.analyze  # noqa: F401,E402
import tasks.remedy  # noqa: F401,E402

prefect.plugins.load_prefect_collections()
