"""Subnets (one depth x width choice) and the elastic space of a supernet."""

from __future__ import annotations

import re
from dataclasses import dataclass

from s2g_deploy.errors import SubnetError

_SUBNET_RE = re.compile(r"^\s*([0-9]+)\s*[xX]\s*([0-9]+)\s*$", re.ASCII)  # ASCII digits only


@dataclass(frozen=True, order=True)
class Subnet:
    """Keep the first ``depth`` blocks and the first ``width`` residual features (N) of every layer.

    The LSTM hidden size is 2 * width and the mask hidden size 4 * width (tied as in BSRNN).
    Written as ``"<depth>x<width>"``, e.g. ``"6x48"``.
    """

    depth: int
    width: int

    def __str__(self) -> str:
        return f"{self.depth}x{self.width}"

    @classmethod
    def parse(cls, text: str) -> Subnet:
        match = _SUBNET_RE.match(text)
        if not match:
            raise SubnetError(f"subnet {text!r} is not of the form DEPTHxWIDTH, e.g. '4x32'")
        return cls(int(match.group(1)), int(match.group(2)))


@dataclass(frozen=True)
class ElasticSpace:
    """The subnets a supernet was trained to serve: every depth in ``depths`` times every width in ``widths``."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        depths = tuple(sorted({int(d) for d in self.depths}))
        widths = tuple(sorted({int(w) for w in self.widths}))
        if not depths or not widths or depths[0] < 1 or widths[0] < 1:
            raise ValueError(f"elastic space needs positive depths and widths, got {self.depths} x {self.widths}")
        object.__setattr__(self, "depths", depths)
        object.__setattr__(self, "widths", widths)

    @property
    def largest(self) -> Subnet:
        return Subnet(self.depths[-1], self.widths[-1])

    @property
    def smallest(self) -> Subnet:
        return Subnet(self.depths[0], self.widths[0])

    def grid(self) -> list[Subnet]:
        """Every subnet, smallest first (depth-major)."""
        return [Subnet(d, w) for d in self.depths for w in self.widths]

    def __contains__(self, subnet: object) -> bool:
        return isinstance(subnet, Subnet) and subnet.depth in self.depths and subnet.width in self.widths

    def check(self, subnet: Subnet) -> Subnet:
        """Return ``subnet`` if it is in the space, else raise a :class:`SubnetError` listing the valid ones."""
        if subnet not in self:
            raise SubnetError(
                f"subnet {subnet} is not in this supernet's elastic space: depths "
                f"{','.join(map(str, self.depths))} x widths {','.join(map(str, self.widths))}"
            )
        return subnet

    def to_dict(self) -> dict:
        return {"depths": list(self.depths), "widths": list(self.widths)}

    @classmethod
    def from_dict(cls, data: dict) -> ElasticSpace:
        return cls(tuple(data["depths"]), tuple(data["widths"]))
