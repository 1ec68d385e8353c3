"""The worker of the whole service: the queue that carries job ids and the periodic tasks
(queue.py: jobs, retention, tree heads, webhook delivery) and PostgreSQL's maintenance
(maintenance.py). The last layer: it imports the jobs, nothing imports it but the app."""
