"""The Temporal engine: one workflow per job, one activity per attempt, task queues per job type.

settings.py     FERRYMAN_TEMPORAL_* and the task queue of each job type
workflows.py    the job workflow: attempts, retries and their backoff (durable timers); no I/O
activities.py   what touches the store and the connectors: run an attempt, settle a lost one
worker.py       ``ferryman worker --engine temporal``: a Temporal worker per task queue
engine.py       the client side: submit a job's workflow, wait for its end, cancel it
"""
