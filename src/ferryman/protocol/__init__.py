"""The Airbyte protocol: message types, a fast line codec, catalogs and state.

Pure: nothing here starts a process, touches a database or reads the clock.
"""

PROTOCOL_VERSION = "0.5.2"
