"""featcli.engine"""
