"""The site process: local ledger, devices, stations and sync to central.

It must keep recording while headquarters is unreachable, so everything a station needs
lives in the local SQLite ledger, and central is only ever talked to by the sync jobs.
"""
