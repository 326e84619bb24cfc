"""featcli.shape"""
