"""gunicorn settings for production: `gunicorn -c app/gunicorn.conf.py "app:create_app()"`."""

import multiprocessing
import os

bind = os.environ.get("HAVEN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("HAVEN_WORKERS", multiprocessing.cpu_count() * 2 + 1))
worker_class = "sync"
timeout = 30
graceful_timeout = 30
max_requests = 2000
max_requests_jitter = 200
# Access logs carry the path only: no query strings (a search term could be identifying).
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss'
errorlog = "-"
forwarded_allow_ips = os.environ.get("HAVEN_FORWARDED_ALLOW_IPS", "127.0.0.1")
preload_app = True
