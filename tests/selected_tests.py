"""Which tests of a module this session will run (for module fixtures that start work early)."""

import pytest


def selected_in_module(request: pytest.FixtureRequest) -> set[str]:
    """The names (without parameters) of the session's selected tests in ``request``'s module."""
    return {
        getattr(item, "originalname", item.name)
        for item in request.session.items
        if item.module is request.module
    }
