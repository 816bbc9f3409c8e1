"""What the three clouds (aws, gcp, azure) share: a dated price catalog and the image pushed for them."""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from launcher.backend import Alternative, Backend
from launcher.catalog import load_catalog, select
from launcher.spec import DEFAULT_IMAGE, JobSpec
from launcher.state.pushed import pushed_ref

__all__ = ["CloudBackend"]


class CloudBackend(Backend):
    """A cloud backend: priced from its dated catalog (launcher/catalog/<name>.json), running
    the image that `launch image build --push -b <name>` pushed when the spec keeps the default tag.

    The pushed reference and the catalog are read when the backend is made (tests
    inject them), so that `plan` itself reads no environment and no files.
    """

    # The options of this backend's section that name a catalog instance, each with the catalog row's field that
    # fills it ("name": the instance's own catalog name); and the options that leave no instance to choose.
    instance_options: ClassVar[Mapping[str, str]] = {}
    fixed_by: ClassVar[tuple[str, ...]] = ()

    def __init__(self, catalog: Mapping[str, Any] | None = None, pushed_image: str | None = None) -> None:
        if pushed_image is None:
            pushed_image = pushed_ref(self.name)
        if catalog is None:
            catalog = load_catalog(self.name)
        self._pushed_image = pushed_image
        self.catalog: Mapping[str, Any] = catalog

    def training_image(self, spec: JobSpec) -> str:
        """spec.image, or the pushed reference in place of this project's default local tag."""
        if spec.image == DEFAULT_IMAGE and self._pushed_image:
            return self._pushed_image
        return spec.image

    def alternatives(self, spec: JobSpec) -> list[Alternative]:
        """The fitting catalog instances by the catalog rule (launcher.catalog.select), its choice first; [] when
        the spec names the instance (the user's choice is kept) or sets an option in `fixed_by`. The region stays
        the spec's: its buckets, role, image and data are regional."""
        opts = self.options(spec)
        if not self.instance_options or any(
            getattr(opts, key, None) for key in (*self.instance_options, *self.fixed_by)
        ):
            return []
        ranked = select.ranked(self.catalog, spec.resources, getattr(opts, "region", None))
        nexts = [c for c in ranked[1:] if c.on_demand is not None]  # an unpriced instance is never the next cheapest
        return [Alternative(c.name, c.price, self._naming(c)) for c in ranked[:1] + nexts]

    def _naming(self, choice: select.Choice) -> dict[str, Any]:
        """The options that name `choice`, by `instance_options` (a field the row leaves empty is left out)."""
        values = {
            key: choice.name if field == "name" else choice.row.get(field)
            for key, field in self.instance_options.items()
        }
        return {key: value for key, value in values.items() if value is not None}
