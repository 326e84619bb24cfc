"""featcli.stages"""
