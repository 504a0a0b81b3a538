# layerimg's Ansible connection: runs tasks inside a layerimg build sandbox.
# layerimg writes this file to a temporary directory for one step; it talks
# to the agent serving the sandbox (rootfs/agent.go) over the unix socket
# named by LAYERIMG_AGENT_SOCKET. Files are put and fetched by the agent
# inside the sandbox, never through the host's view of the image.
from __future__ import (absolute_import, division, print_function)
__metaclass__ = type

DOCUMENTATION = '''
    name: layerimg
    short_description: run tasks in a layerimg build sandbox
    description:
        - Executes commands and copies files through the agent of a layerimg
          Ansible step, inside the step's namespaces and overlay.
    author: layerimg
    extends_documentation_fragment:
        - connection_pipelining
'''

import json
import os
import socket

from ansible.errors import AnsibleConnectionFailure, AnsibleError, AnsibleFileNotFound
from ansible.module_utils._text import to_bytes, to_text
from ansible.plugins.connection import ConnectionBase


class Connection(ConnectionBase):
    transport = 'layerimg'
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super(Connection, self).__init__(*args, **kwargs)
        # Not _socket_path: Ansible takes a connection with that attribute
        # for a persistent one and sends it JSON-RPC at the end of the play.
        self._agent_socket = os.environ.get('LAYERIMG_AGENT_SOCKET', '')

    def _connect(self):
        if not self._agent_socket:
            raise AnsibleConnectionFailure('LAYERIMG_AGENT_SOCKET is not set: this connection works only inside a layerimg build')
        self._connected = True
        return self

    def _call(self, header, data=b''):
        header = dict(header, size=len(data))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self._agent_socket)
            s.sendall(json.dumps(header).encode('utf-8') + b'\n' + data)
            f = s.makefile('rb')
            line = f.readline()
            if not line:
                raise AnsibleConnectionFailure('the layerimg sandbox closed the connection')
            reply = json.loads(line)
            body = f.read(reply.get('size', 0))
        except OSError as e:
            raise AnsibleConnectionFailure('talking to the layerimg sandbox: %s' % e)
        finally:
            s.close()
        return reply, body

    def exec_command(self, cmd, in_data=None, sudoable=True):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        reply, body = self._call({'op': 'exec', 'argv': ['/bin/sh', '-c', to_text(cmd)]}, in_data or b'')
        if reply.get('error'):
            raise AnsibleConnectionFailure(reply['error'])
        n = reply.get('stdout', 0)
        return reply.get('rc', 0), body[:n], body[n:]

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        try:
            with open(to_bytes(in_path), 'rb') as f:
                data = f.read()
        except IOError as e:
            raise AnsibleFileNotFound('file to put %s: %s' % (in_path, e))
        reply, _ = self._call({'op': 'put', 'path': out_path}, data)
        if reply.get('error'):
            raise AnsibleError(reply['error'])

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        reply, body = self._call({'op': 'fetch', 'path': in_path})
        if reply.get('error'):
            raise AnsibleFileNotFound(reply['error'])
        with open(to_bytes(out_path), 'wb') as f:
            f.write(body)

    def close(self):
        self._connected = False
