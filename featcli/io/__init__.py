"""featcli.io"""
