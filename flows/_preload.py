"""Imported once by the audit's fork server (:mod:`tasks.compute`): everything a compute worker
needs before its first call, so that no worker pays for it: the analysis (audiolib), the report
schema and the work functions (:mod:`tasks.work`). No Prefect: the workers never run Prefect's
task engine (the tasks run in the flow's threads and send their work here).
"""

from flows.lifetime import die_with_parent

die_with_parent()  # the fork server: killed with the audit that started it (flows/lifetime.py)

import audiolib.diagnose  # noqa: F401,E402
import tasks.work  # noqa: F401,E402
