"""The jobs service: a JupyterHub service that runs notebooks as jobs for their owners.

Layers in one direction (after jupyter-scheduler): :mod:`.handlers` parse and authorise,
:mod:`.manager` decides, a backend (:mod:`.backends`) runs, :mod:`.store` records. The service
holds the cluster credentials; users reach it only through the hub with their own token.
"""
