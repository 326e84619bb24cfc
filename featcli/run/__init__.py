"""featcli.run"""
