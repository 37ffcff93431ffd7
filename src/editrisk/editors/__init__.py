"""Editors, one module per method, all registered by name."""

from editrisk.editors.base import Editor, HParams, get_editor, list_editors, register

__all__ = ["Editor", "HParams", "get_editor", "list_editors", "register"]
