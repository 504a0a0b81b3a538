# layerimg's Ansible callback: writes the play recap and the names of the
# tasks that reported changed to the JSON file named by
# LAYERIMG_ANSIBLE_STATS, for the build manifest and the idempotency check.
from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = '''
    name: layerimg_stats
    type: aggregate
    short_description: task counts for layerimg
    description:
        - Records the play recap and the changed tasks of a layerimg Ansible step.
    author: layerimg
'''

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'layerimg_stats'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super(CallbackModule, self).__init__(*args, **kwargs)
        self._changed = []

    def v2_runner_on_ok(self, result):
        if result._result.get('changed', False):
            name = result._task.get_name()
            if name not in self._changed:
                self._changed.append(name)

    def v2_playbook_on_stats(self, stats):
        out = {'changed_tasks': self._changed, 'hosts': {}}
        for h in sorted(stats.processed.keys()):
            out['hosts'][h] = stats.summarize(h)
        path = os.environ.get('LAYERIMG_ANSIBLE_STATS')
        if path:
            with open(path, 'w') as f:
                json.dump(out, f)
