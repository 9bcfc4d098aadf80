"""Data Docs page views that compile GX's Jinja templates once per process instead of once per build.

GX builds a new `DefaultJinjaView` (and with it a new Jinja environment) for every section of every
Data Docs build, so each build compiled the same ~50 templates again (about 0.5 s of each table's
check). These subclasses render exactly as GX's own views; they only share one environment per
view class and template folders. The data home's `great_expectations.yml` names them as the
site's views (`open_context`), the configuration hook GX offers for custom views.
"""

from __future__ import annotations

from typing import ClassVar

from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import Environment

VIEWS_MODULE = __name__


class _SharedEnvironment:
    """Mixin: the first view of a class (and template folders) keeps its environment for the others.

    The environment's filters are bound to that first view; a view's only state is its template
    folders, which are part of the key, so every view of the key renders the same.
    """

    _environments: ClassVar[dict[tuple[type, str | None, str | None], Environment]] = {}
    env: Environment

    def __init__(self, custom_styles_directory: str | None = None, custom_views_directory: str | None = None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)  # type: ignore[call-arg]
        key = (type(self), custom_styles_directory, custom_views_directory)
        self.env = _SharedEnvironment._environments.setdefault(key, self.env)


class SharedJinjaPageView(_SharedEnvironment, DefaultJinjaPageView):
    """GX's page view (suite and validation result pages) with a per-process template cache."""


class SharedJinjaIndexPageView(_SharedEnvironment, DefaultJinjaIndexPageView):
    """GX's index page view with a per-process template cache."""
