"""How the web app reaches the download nodes through Celery: download messages to the shared
queue or to one node's direct queue, and remote-control commands to one node.

Neither ever raises: a broker that is down makes a message wait (the job's row keeps
dispatched_at NULL, and cluster.web's loop sends it again) and a command go unanswered (the
node's reconcile applies the row's desired state when it is back).
"""
import logging
import threading

from cluster.celery_app import DOWNLOAD_TASK, DOWNLOADS_QUEUE, direct_queue

log = logging.getLogger(__name__)
CONTROL_TIMEOUT = 1.0  # seconds a command waits for its node's reply (measured: 2-4 ms when up)
BROKER_ERRORS = (OSError, ConnectionError, TimeoutError)  # kombu's and redis-py's derive from these


class Dispatcher:
    """Sends download tasks and control commands; remembers whether the broker took the last send."""

    def __init__(self, celery_app):
        self.app = celery_app
        self._lock = threading.Lock()  # one send at a time: a kombu connection is not thread-safe
        self.problem = None  # why the last send failed, while it did

    def downloads(self, jobs):
        """Send hashdrop.download for each (info_hash, node): to that node's direct queue when a
        node holds the job's files, else to the shared queue. The info hashes the broker took."""
        sent = []
        with self._lock:
            try:
                with self.app.producer_or_acquire() as producer:
                    for info_hash, node in jobs:
                        queue = direct_queue(node) if node else DOWNLOADS_QUEUE
                        self.app.send_task(DOWNLOAD_TASK, args=(info_hash,), queue=queue, producer=producer,
                                           retry=False)
                        sent.append(info_hash)
            except Exception as exc:  # kombu and redis-py raise several kinds; none may fail a submit
                self._failed(f"cannot send download tasks to the broker: {exc}")
                return sent
            self._worked()
        return sent

    def command(self, node, name, **arguments):
        """Run a remote-control command on one node; whether it answered within CONTROL_TIMEOUT."""
        answered = self.ask(node, name, **arguments) is not None
        if not answered:
            log.info("%s got no answer from %s within %.0f s; it applies it when it reconciles", name, node,
                     CONTROL_TIMEOUT)
        return answered

    def ask(self, node, name, **arguments):
        """Run a remote-control command on one node; its answer (a dict), or None when it gave none
        within CONTROL_TIMEOUT or the broker did not take the command."""
        with self._lock:
            try:
                replies = self.app.control.broadcast(name, arguments=arguments, destination=[node], reply=True,
                                                     timeout=CONTROL_TIMEOUT)
            except Exception as exc:  # the node's reconcile applies the stored desired state anyway
                self._failed(f"cannot send {name} to {node}: {exc}")
                return None
            self._worked()
        answer = next((reply[node] for reply in replies or () if node in reply), None)
        return answer if isinstance(answer, dict) else None

    def _failed(self, problem):
        if self.problem is None:
            log.warning("%s", problem)
        self.problem = problem

    def _worked(self):
        if self.problem is not None:
            log.info("the broker takes messages again")
        self.problem = None
