"""`launch catalog update -b aws|gcp|azure`: refresh a price catalog from the provider's public price API.

Each updater reads the current catalog (the user's refreshed copy or the
shipped one), asks the provider for the prices of the instances it lists, and
returns a new catalog with today's date. Nothing is written unless the whole
refresh succeeded, and the new file replaces the old one atomically in the
user's state dir (`launcher.catalog.user_catalog_path`), so a failed refresh
keeps the old file. Prices the provider did not return keep their old value
and are listed in the catalog's `stale` key.

- aws: AWS Price List Query API through boto3's `pricing` client
  (service AmazonSageMaker, component Training); it carries no managed-spot
  prices, so spot keeps its previous ratio to on-demand.
- azure: Azure Retail Prices API (https://prices.azure.com/api/retail/prices),
  OData `$filter` per region, paging through `NextPageLink`.
- gcp: Cloud Billing Catalog API (services/{id}/skus, paging through
  `nextPageToken`), Vertex AI training SKUs ("Training on NVIDIA Tesla T4
  GPU", "Training on N1 Predefined Instance CPU/RAM"); instance prices are
  recomputed as machine + count x accelerator.

Clients are injected (`pricing_client`, `get_json`), so tests use botocore's
Stubber and local HTTP fakes of the REST APIs.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from launcher.errors import LauncherError

__all__ = [
    "AZURE_PRICES_URL",
    "GCP_BILLING_URL",
    "VERTEX_SERVICE_ID",
    "update_catalog",
    "update_aws",
    "update_azure",
    "update_gcp",
    "http_get_json",
]

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
AZURE_API_VERSION = "2023-01-01-preview"
GCP_BILLING_URL = "https://cloudbilling.googleapis.com"
VERTEX_SERVICE_ID = "C7E2-9256-1C43"  # "Vertex AI" in the Cloud Billing Catalog (GET /v1/services lists them)
GetJson = Callable[[str, Mapping[str, str]], dict[str, Any]]
Catalog = dict[str, Any]


def http_get_json(url: str, headers: Mapping[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(url, headers=dict(headers))
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - https URLs of public price APIs
        return json.loads(response.read().decode())


def update_catalog(backend: str, today: str | None = None, **clients: Any) -> Path:
    """Refresh `backend`'s catalog and write it to the user catalog path; the old file survives a failure."""
    from launcher.catalog import catalog_path, load_catalog, user_catalog_path  # noqa: PLC0415

    updaters = {"aws": update_aws, "azure": update_azure, "gcp": update_gcp}
    if backend not in updaters:
        raise LauncherError(f"No price updater for backend '{backend}'.", "Choose one of: aws, azure, gcp.")
    old = copy.deepcopy(load_catalog(backend))
    try:
        new = updaters[backend](old, **clients)
    except LauncherError as exc:
        raise LauncherError(
            f"Refreshing the {backend} catalog failed: {exc.message}; kept {catalog_path(backend)}.", exc.fix
        ) from None
    except Exception as exc:  # network, HTTP, SDK errors: any failure keeps the old file
        raise LauncherError(
            f"Refreshing the {backend} catalog failed ({type(exc).__name__}: {exc}); kept {catalog_path(backend)}.",
            "Check network access and credentials, then retry.",
        ) from None
    new["date"] = today or _dt.date.today().isoformat()
    target = user_catalog_path(backend)
    _write_atomic(target, new)
    return target


def _write_atomic(path: Path, data: Catalog) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _set_price(
    entry: dict[str, Any], region: str, on_demand: float | None, spot: float | None, stale: list[str], name: str
) -> None:
    """Write new prices; keep the old spot/on-demand ratio when only on-demand is known."""
    prices = entry.setdefault("prices", {}).setdefault(region, {})
    if on_demand is None:
        stale.append(f"{name}@{region}")
        return
    old_od, old_spot = prices.get("on_demand"), prices.get("spot")
    if spot is None and old_od and old_spot:
        spot = round(on_demand * old_spot / old_od, 6)
    prices["on_demand"] = round(on_demand, 6)
    if spot is not None:
        prices["spot"] = round(spot, 6)


def _finish(catalog: Catalog, source: str, stale: list[str], keys: tuple[str, ...] = ("instances",)) -> Catalog:
    """Stamp the source and the stale list; a refresh that matched nothing is a failure."""
    total = sum(len(e.get("prices", {})) for key in keys for e in catalog.get(key, {}).values())
    if stale and len(stale) >= total:
        raise LauncherError(
            "the price API returned none of the catalog's instances", "Check the region names and filters."
        )
    catalog["sources"] = [source, *[s for s in catalog.get("sources", []) if s != source]]
    catalog["stale"] = sorted(stale)
    return catalog


# ---------------------------------------------------------------- AWS


def update_aws(catalog: Catalog, pricing_client: Any = None) -> Catalog:
    client = pricing_client or _pricing_client()
    stale: list[str] = []
    for region in _regions(catalog):
        found = _aws_prices(client, region)
        for name, entry in catalog["instances"].items():
            if region in entry.get("prices", {}):
                _set_price(entry, region, found.get(name), None, stale, name)
    return _finish(
        catalog, "AWS Price List Query API (pricing:GetProducts, AmazonSageMaker, component Training)", stale
    )


def _pricing_client() -> Any:
    from launcher.lazy import require  # noqa: PLC0415

    boto3 = require("boto3", "aws")
    # The Price List Query API is served from us-east-1 (and ap-south-1, eu-central-1):
    # https://docs.aws.amazon.com/awsaccountbilling/latest/aboutv2/using-price-list-query-api.html
    return boto3.client("pricing", region_name="us-east-1")


def _aws_prices(client: Any, region: str) -> dict[str, float]:
    filters = [
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region},
        {"Type": "TERM_MATCH", "Field": "component", "Value": "Training"},
    ]
    found: dict[str, float] = {}
    token = None
    while True:
        kwargs: dict[str, Any] = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        page = client.get_products(**kwargs)
        for item in page.get("PriceList", []):
            name, price = _aws_item(item)
            if name and price is not None:
                found[name] = min(price, found.get(name, price))
        token = page.get("NextToken")
        if not token:
            return found


def _aws_item(item: str | Mapping[str, Any]) -> tuple[str | None, float | None]:
    """One PriceList entry (a JSON string): instanceName and its OnDemand USD per hour."""
    product = json.loads(item) if isinstance(item, str) else item
    name = product.get("product", {}).get("attributes", {}).get("instanceName")
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dim in term.get("priceDimensions", {}).values():
            usd = dim.get("pricePerUnit", {}).get("USD")
            if usd not in (None, "") and float(usd) > 0:
                return name, float(usd)
    return name, None


def _regions(catalog: Catalog) -> list[str]:
    return sorted({r for e in catalog.get("instances", {}).values() for r in e.get("prices", {})})


# ---------------------------------------------------------------- Azure


def update_azure(catalog: Catalog, get_json: GetJson | None = None, base_url: str = AZURE_PRICES_URL) -> Catalog:
    get = get_json or http_get_json
    stale: list[str] = []
    sizes = sorted(catalog["instances"])
    for region in _regions(catalog):
        found = _azure_prices(get, base_url, region, sizes)
        for name, entry in catalog["instances"].items():
            if region in entry.get("prices", {}):
                od, spot = found.get(name, (None, None))
                _set_price(entry, region, od, spot, stale, name)
    return _finish(catalog, f"{AZURE_PRICES_URL} (Azure Retail Prices API, Virtual Machines, Linux)", stale)


def _azure_filter(region: str, sizes: list[str]) -> str:
    skus = " or ".join(f"armSkuName eq '{s}'" for s in sizes)
    return (
        f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' and priceType eq 'Consumption' and ({skus})"
    )


def _azure_items(get: GetJson, url: str) -> Iterator[dict[str, Any]]:
    next_url: str | None = url
    while next_url:
        page = get(next_url, {"Accept": "application/json"})
        yield from page.get("Items", [])
        next_url = page.get("NextPageLink")


def _azure_prices(
    get: GetJson, base_url: str, region: str, sizes: list[str]
) -> dict[str, tuple[float | None, float | None]]:
    """armSkuName -> (on-demand, low-priority or spot) Linux prices per hour."""
    query = urllib.parse.urlencode({"api-version": AZURE_API_VERSION, "$filter": _azure_filter(region, sizes)})
    kinds: dict[str, dict[str, float]] = {}
    for item in _azure_items(get, f"{base_url}?{query}"):
        if "windows" in item.get("productName", "").lower() or item.get("unitOfMeasure") != "1 Hour":
            continue
        sku = item.get("skuName", "")
        kind = "low" if sku.endswith("Low Priority") else "spot" if sku.endswith("Spot") else "od"
        kinds.setdefault(item["armSkuName"], {})[kind] = float(item["retailPrice"])
    # Azure ML dedicated-cluster discounts come as low priority; serverless jobs use spot
    return {name: (k.get("od"), k.get("low", k.get("spot"))) for name, k in kinds.items()}


# ---------------------------------------------------------------- GCP

# accelerator key -> pattern of its SKU description ("Training on NVIDIA Tesla T4 GPU running in Americas")
_GCP_GPU_PATTERNS = {
    "NVIDIA_TESLA_T4": r"\bT4\b",
    "NVIDIA_TESLA_V100": r"\bV100\b",
    "NVIDIA_L4": r"\bL4\b",
    "NVIDIA_TESLA_A100": r"\bA100\b(?!\s*80)",
    "NVIDIA_A100_80GB": r"\bA100\s*80\s*GB",
    "NVIDIA_H100_80GB": r"\bH100\b",
}


def update_gcp(
    catalog: Catalog, get_json: GetJson | None = None, base_url: str = GCP_BILLING_URL,
    service_id: str = VERTEX_SERVICE_ID, api_key: str | None = None,
) -> Catalog:  # fmt: skip
    get = get_json or http_get_json
    skus = [s for s in _gcp_skus(get, base_url, service_id, api_key) if "training" in s.get("description", "").lower()]
    stale: list[str] = []
    regions = catalog.get("regions") or _regions(catalog)
    for region in regions:
        here = [s for s in skus if region in s.get("serviceRegions", [])]
        _gcp_accelerators(catalog, here, region, stale)
        _gcp_machines(catalog, here, region, stale)
    _gcp_instances(catalog)
    source = f"{base_url}/v1/services/{service_id}/skus (Cloud Billing Catalog API, Vertex AI training)"
    return _finish(catalog, source, stale, keys=("accelerators", "machine_types"))


def _gcp_skus(get: GetJson, base_url: str, service_id: str, api_key: str | None) -> Iterator[dict[str, Any]]:
    headers = _gcp_auth(api_key)
    params: dict[str, str] = {"currencyCode": "USD", "pageSize": "5000"}
    key = api_key or os.environ.get("GOOGLE_API_KEY")
    if key:
        params["key"] = key
    while True:
        page = get(f"{base_url}/v1/services/{service_id}/skus?{urllib.parse.urlencode(params)}", headers)
        yield from page.get("skus", [])
        token = page.get("nextPageToken")
        if not token:
            return
        params["pageToken"] = token


def _gcp_auth(api_key: str | None) -> dict[str, str]:
    """An API key (GOOGLE_API_KEY) needs no header; otherwise Application Default Credentials."""
    if api_key or os.environ.get("GOOGLE_API_KEY"):
        return {}
    from launcher.lazy import require  # noqa: PLC0415

    google_auth = require("google.auth", "gcp")
    from google.auth.transport.requests import Request  # noqa: PLC0415

    try:
        creds, _ = google_auth.default(scopes=["https://www.googleapis.com/auth/cloud-billing.readonly"])
        creds.refresh(Request())
    except Exception as exc:  # DefaultCredentialsError, RefreshError
        raise LauncherError(
            f"no Google credentials ({exc})", "Set GOOGLE_API_KEY or run: gcloud auth application-default login"
        ) from None
    return {"Authorization": f"Bearer {creds.token}"}


def _unit_price(sku: Mapping[str, Any]) -> float | None:
    """USD per unit from the last tier of the first pricing info (units + nanos)."""
    infos = sku.get("pricingInfo") or []
    rates = infos[0].get("pricingExpression", {}).get("tieredRates", []) if infos else []
    if not rates:
        return None
    money = rates[-1].get("unitPrice", {})
    return int(money.get("units") or 0) + int(money.get("nanos") or 0) / 1e9


def _is_spot(sku: Mapping[str, Any]) -> bool:
    usage = sku.get("category", {}).get("usageType", "")
    return usage == "Preemptible" or "spot" in sku.get("description", "").lower()


def _pick(skus: list[dict[str, Any]], pattern: str) -> tuple[float | None, float | None]:
    od = spot = None
    for sku in skus:
        if re.search(pattern, sku.get("description", ""), re.IGNORECASE):
            price = _unit_price(sku)
            if _is_spot(sku):
                spot = spot if spot is not None else price
            else:
                od = od if od is not None else price
    return od, spot


def _gcp_accelerators(catalog: Catalog, skus: list[dict[str, Any]], region: str, stale: list[str]) -> None:
    gpu_skus = [s for s in skus if "gpu" in s.get("description", "").lower()]
    for name, entry in catalog.get("accelerators", {}).items():
        pattern = _GCP_GPU_PATTERNS.get(name)
        od, spot = _pick(gpu_skus, pattern) if pattern else (None, None)
        _set_price(entry, region, od, spot, stale, name)


def _gcp_machines(catalog: Catalog, skus: list[dict[str, Any]], region: str, stale: list[str]) -> None:
    for name, entry in catalog.get("machine_types", {}).items():
        family = name.split("-")[0].upper()  # n1-standard-8 -> N1
        cpu = _pick(skus, rf"\b{family}\b.*Instance (CPU|Core)")
        ram = _pick(skus, rf"\b{family}\b.*Instance Ram")
        if cpu[0] is None or ram[0] is None:
            _set_price(entry, region, None, None, stale, name)
            continue
        od = entry["vcpus"] * cpu[0] + entry["memory_gib"] * ram[0]
        spot = (
            entry["vcpus"] * cpu[1] + entry["memory_gib"] * ram[1]
            if cpu[1] is not None and ram[1] is not None
            else None
        )
        _set_price(entry, region, od, spot, stale, name)


def _gcp_instances(catalog: Catalog) -> None:
    """Combined rows: machine + accelerator_count x accelerator, per region and kind."""
    machines, accels = catalog.get("machine_types", {}), catalog.get("accelerators", {})
    for entry in catalog.get("instances", {}).values():
        machine = machines.get(entry.get("machine_type"), {}).get("prices", {})
        accel = accels.get(entry.get("accelerator_type") or "", {}).get("prices", {})
        for region, prices in entry.get("prices", {}).items():
            for kind in ("on_demand", "spot"):
                m = machine.get(region, {}).get(kind)
                a = accel.get(region, {}).get(kind, 0.0) if entry.get("accelerator_count") else 0.0
                if m is not None and a is not None:
                    prices[kind] = round(m + entry.get("accelerator_count", 0) * a, 6)
