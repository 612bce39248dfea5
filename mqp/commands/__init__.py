"""The commands a user types: `python -m mqp COMMAND` (mqp/__main__.py lists them). stages/ holds
only the stages of dvc.yaml."""
