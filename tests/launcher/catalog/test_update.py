"""Catalog refresh against protocol-level fakes: botocore's Stubber and local HTTP servers."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from launcher.catalog import load_catalog, user_catalog_path
from launcher.catalog.update import update_catalog
from launcher.errors import LauncherError

Handler = Callable[[str, dict[str, list[str]]], dict[str, Any]]


@pytest.fixture
def http_fake() -> Iterator[Callable[[Handler], str]]:
    """Start a local HTTP server answering GETs with handler(path, query) as JSON; yields its base URL."""
    servers = []

    def start(handler: Handler) -> str:
        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                url = urllib.parse.urlparse(self.path)
                try:
                    body, status = json.dumps(handler(url.path, urllib.parse.parse_qs(url.query))).encode(), 200
                except KeyError:
                    body, status = b'{"error": "not found"}', 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _install(backend: str, catalog: dict[str, Any]) -> None:
    path = user_catalog_path(backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(catalog))


def _prices(od: float, spot: float) -> dict[str, float]:
    return {"on_demand": od, "spot": spot}


# ---------------------------------------------------------------- AWS

AWS = {"backend": "aws", "date": "2020-01-01", "sources": ["old"], "instances": {
    "ml.g5.xlarge": {"gpus": 1, "gpu_type": "A10G", "prices": {"us-east-1": _prices(1.0, 0.3)}},
    "ml.p3.2xlarge": {"gpus": 1, "gpu_type": "V100", "prices": {"us-east-1": _prices(3.0, 0.9)}}}}  # fmt: skip


def _price_item(instance: str, usd: str) -> str:
    return json.dumps({
        "product": {"productFamily": "ML Instance", "attributes": {"instanceName": instance, "component": "Training"}},
        "terms": {"OnDemand": {"T1": {"priceDimensions": {"D1": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}}},
    })  # fmt: skip


def _pricing_stub():  # type: ignore[no-untyped-def]
    boto3 = pytest.importorskip("boto3")
    from botocore.stub import Stubber

    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_aws_update_pages_through_price_list(tmp_path) -> None:
    _install("aws", AWS)
    client, stub = _pricing_stub()
    filters = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
               {"Type": "TERM_MATCH", "Field": "component", "Value": "Training"}]  # fmt: skip
    base = {"ServiceCode": "AmazonSageMaker", "Filters": filters, "MaxResults": 100}
    stub.add_response("get_products", {"PriceList": [_price_item("ml.g5.xlarge", "1.5")], "NextToken": "t2"}, base)
    stub.add_response(
        "get_products", {"PriceList": [_price_item("ml.p3.2xlarge", "3.825")]}, {**base, "NextToken": "t2"}
    )
    with stub:
        path = update_catalog("aws", today="2026-11-27", pricing_client=client)
    stub.assert_no_pending_responses()
    new = json.loads(path.read_text())
    assert new["date"] == "2026-11-27" and new["stale"] == []
    assert new["instances"]["ml.g5.xlarge"]["prices"]["us-east-1"] == {
        "on_demand": 1.5,
        "spot": 0.45,
    }  # spot keeps its ratio
    assert new["instances"]["ml.p3.2xlarge"]["prices"]["us-east-1"]["on_demand"] == 3.825
    assert load_catalog("aws")["date"] == "2026-11-27"


def test_aws_failure_keeps_the_old_file() -> None:
    _install("aws", AWS)
    before = user_catalog_path("aws").read_text()
    client, stub = _pricing_stub()
    stub.add_client_error("get_products", service_error_code="AccessDeniedException", service_message="no")
    with stub, pytest.raises(LauncherError, match="kept"):
        update_catalog("aws", pricing_client=client)
    assert user_catalog_path("aws").read_text() == before


def test_aws_update_that_matches_nothing_fails() -> None:
    _install("aws", AWS)
    client, stub = _pricing_stub()
    stub.add_response("get_products", {"PriceList": [_price_item("ml.other", "9")]})
    with stub, pytest.raises(LauncherError, match="none of the catalog"):
        update_catalog("aws", pricing_client=client)
    assert json.loads(user_catalog_path("aws").read_text())["date"] == "2020-01-01"


# ---------------------------------------------------------------- Azure

AZURE = {"backend": "azure", "date": "2020-01-01", "sources": [], "instances": {
    "Standard_NC4as_T4_v3": {"gpus": 1, "gpu_type": "T4", "prices": {"eastus": _prices(0.5, 0.1)}}}}  # fmt: skip


def _az(sku: str, price: float, product: str = "NCasT4_v3 Series", unit: str = "1 Hour") -> dict[str, Any]:
    return {"armSkuName": "Standard_NC4as_T4_v3", "armRegionName": "eastus", "skuName": sku, "productName": product,
            "retailPrice": price, "unitOfMeasure": unit, "type": "Consumption"}  # fmt: skip


def test_azure_update_follows_next_page_link(http_fake) -> None:  # type: ignore[no-untyped-def]
    _install("azure", AZURE)
    seen: list[dict[str, list[str]]] = []
    base = ""

    def handler(path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        assert path == "/api/retail/prices"
        seen.append(query)
        if "page" not in query:
            items = [_az("NC4as T4 v3", 0.526), _az("NC4as T4 v3", 0.9, product="NCasT4_v3 Series Windows")]
            return {"Items": items, "NextPageLink": f"{base}/api/retail/prices?page=2"}
        return {"Items": [_az("NC4as T4 v3 Low Priority", 0.105), _az("NC4as T4 v3 Spot", 0.2)], "NextPageLink": None}

    base = http_fake(handler)
    update_catalog("azure", today="2026-11-27", base_url=f"{base}/api/retail/prices")
    flt = seen[0]["$filter"][0]
    assert "armRegionName eq 'eastus'" in flt and "armSkuName eq 'Standard_NC4as_T4_v3'" in flt
    prices = load_catalog("azure")["instances"]["Standard_NC4as_T4_v3"]["prices"]["eastus"]
    assert prices == {"on_demand": 0.526, "spot": 0.105}  # Linux price; low priority preferred for Azure ML


def test_azure_http_error_keeps_the_old_file(http_fake) -> None:  # type: ignore[no-untyped-def]
    _install("azure", AZURE)

    def handler(path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        raise KeyError(path)

    base = http_fake(handler)
    with pytest.raises(LauncherError, match="HTTPError"):
        update_catalog("azure", base_url=f"{base}/api/retail/prices")
    assert load_catalog("azure")["date"] == "2020-01-01"


# ---------------------------------------------------------------- GCP

GCP = {"backend": "gcp", "date": "2020-01-01", "sources": [], "regions": ["us-central1"],
       "accelerators": {"NVIDIA_TESLA_T4": {"gpu_type": "T4", "prices": {"us-central1": _prices(0.4, 0.1)}}},
       "machine_types": {"n1-standard-4": {"vcpus": 4, "memory_gib": 15.0, "prices": {"us-central1": _prices(0.2, 0.05)}}},
       "instances": {"n1-standard-4+1xT4": {"machine_type": "n1-standard-4", "accelerator_type": "NVIDIA_TESLA_T4",
                                            "accelerator_count": 1, "gpus": 1, "gpu_type": "T4",
                                            "prices": {"us-central1": _prices(0.6, 0.15)}}}}  # fmt: skip


def _sku(description: str, usd: float, usage: str = "OnDemand", region: str = "us-central1") -> dict[str, Any]:
    units, nanos = int(usd), round((usd - int(usd)) * 1e9)
    rate = {"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": str(units), "nanos": nanos}}
    return {"description": description, "category": {"usageType": usage}, "serviceRegions": [region],
            "pricingInfo": [{"pricingExpression": {"usageUnit": "h", "tieredRates": [rate]}}]}  # fmt: skip


def test_gcp_update_prices_machine_plus_accelerator(http_fake, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _install("gcp", GCP)
    monkeypatch.setenv("GOOGLE_API_KEY", "test-key")
    pages = {
        None: {"skus": [_sku("Training on NVIDIA Tesla T4 GPU running in Americas", 0.45),
                        _sku("Training on Spot Preemptible NVIDIA Tesla T4 GPU running in Americas", 0.12, "Preemptible"),
                        _sku("Training on N1 Predefined Instance CPU running in Americas", 0.04)],
               "nextPageToken": "p2"},
        "p2": {"skus": [_sku("Training on N1 Predefined Instance RAM running in Americas", 0.005),
                        _sku("Training on Spot Preemptible N1 Predefined Instance CPU running in Americas", 0.01, "Preemptible"),
                        _sku("Training on Spot Preemptible N1 Predefined Instance RAM running in Americas", 0.001, "Preemptible"),
                        _sku("Training on NVIDIA Tesla T4 GPU running in Belgium", 9.9, region="europe-west1"),
                        _sku("Prediction on NVIDIA Tesla T4 GPU running in Americas", 7.7)]},
    }  # fmt: skip

    def handler(path: str, query: dict[str, list[str]]) -> dict[str, Any]:
        assert path == "/v1/services/C7E2-9256-1C43/skus" and query["key"] == ["test-key"]
        return pages[query.get("pageToken", [None])[0]]

    base = http_fake(handler)
    update_catalog("gcp", today="2026-11-27", base_url=base)
    new = load_catalog("gcp")
    assert new["accelerators"]["NVIDIA_TESLA_T4"]["prices"]["us-central1"] == {"on_demand": 0.45, "spot": 0.12}
    machine = new["machine_types"]["n1-standard-4"]["prices"]["us-central1"]
    assert machine["on_demand"] == pytest.approx(4 * 0.04 + 15 * 0.005)
    assert machine["spot"] == pytest.approx(4 * 0.01 + 15 * 0.001)
    combined = new["instances"]["n1-standard-4+1xT4"]["prices"]["us-central1"]
    assert combined["on_demand"] == pytest.approx(4 * 0.04 + 15 * 0.005 + 0.45)
    assert new["stale"] == []


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(LauncherError, match="aws, azure, gcp"):
        update_catalog("local")
