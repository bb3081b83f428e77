"""The original's Python client against a running ubdcc restapi.

Drives every method of `unicorn_binance_local_depth_cache.cluster.Cluster` (PyPI package
`unicorn-binance-local-depth-cache`, see `requirements.txt`) in all four forms (sync and `_async`,
each with and without `debug=True`) and checks each answer against the contract in
`docs/upstream-api.md` (sections 2-6, 13 and 14).

Environment:
- `UBDCC_RESTAPI_URL` (e.g. `http://127.0.0.1:42081`): the restapi under test. Unset: every
  test is skipped. Nothing answering `/test` there: the run stops at once with exit code 1.
- `UBDCC_SIM_URL` (e.g. `http://127.0.0.1:42090`): the exchange simulator the cluster reads from.
  Its `/sim/truth` endpoint is the truth that served books are compared with. Unset: the
  comparisons with the truth are skipped.
- `UBDCC_COMPAT_EXCHANGE` (default `binance.com`): the exchange string of the simulated markets.

The cluster must already run with at least two DCNs, and the simulator must offer the markets
`SIM10USDT`..`SIM19USDT`, which this module alone uses. The module stops them before and after it
runs, so it can be run again against the same cluster.

Every response must be a complete envelope: a dict with `result` "OK" or "ERROR" and the `event`
of the endpoint. A bare `{"error": ...}` means an HTTP error, a transport error, or a body that
is not JSON.
"""

import asyncio
import importlib.util
import json
import os
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import unicorn_binance_local_depth_cache
from unicorn_binance_local_depth_cache import cluster as cluster_module
from unicorn_binance_local_depth_cache.cluster import Cluster
from unicorn_binance_local_depth_cache.exceptions import DepthCacheClusterNotReachableError

RESTAPI_URL = os.environ.get("UBDCC_RESTAPI_URL")
# Every test is skipped (and nothing is contacted) without a restapi to test.
pytestmark = pytest.mark.skipif(not RESTAPI_URL, reason="UBDCC_RESTAPI_URL is not set")
SIM_URL = os.environ.get("UBDCC_SIM_URL")
EXCHANGE = os.environ.get("UBDCC_COMPAT_EXCHANGE", "binance.com")
# The simulator's family of the exchange's markets (`/sim/truth?family=`).
SIM_FAMILY = "futures" if "futures" in EXCHANGE else "spot"

# The markets of this module, each with one job.
BOOK = "SIM10USDT"  # created once with the client's defaults; every read test uses it
CREATE = "SIM11USDT"  # create, duplicate, info, stop; once per variant
BATCH = ["SIM12USDT", "SIM13USDT"]  # create_depthcaches, once per variant
REPLICATED = "SIM14USDT"  # desired_quantity=2 on distinct DCNs
INTERVALS = "SIM15USDT"  # explicit update and refresh intervals
NEVER_CREATED = "SIM19USDT"  # reads of a cache that does not exist
OUR_MARKETS = [f"SIM{i}USDT" for i in range(10, 20)]
UNKNOWN_EXCHANGE = "binance.foo"

# Credentials; the secret must never come back in any response.
API_KEY = "COMPATKEY" + uuid.uuid4().hex.upper()
API_SECRET = "compat-secret-" + uuid.uuid4().hex
CREDENTIALS_GROUP = "binance.us"  # a group none of our books uses
VALID_GROUPS = "binance.com, binance.com-futures-testnet, binance.com-testnet, binance.tr, binance.us"

SYNC_TIMEOUT = 60  # seconds for a new book to be served
PROPAGATION_TIMEOUT = 30  # seconds for a stop or a status to reach every reader
TEST_TIME_LIMIT = 240  # seconds per test; the sync client's POST has no timeout of its own
TRUTH_DEPTH = 50  # top levels compared with the simulator

STATUSES = {"starting", "running", "out_of_sync"}
DC_KEYS = {"CREATED_TIME", "DESIRED_QUANTITY", "DISTRIBUTION", "DISTRIBUTION_CHANGES", "EXCHANGE",
           "LAST_DISTRIBUTION_CHANGE", "REFRESH_INTERVAL", "MARKET", "UPDATE_INTERVAL"}
DISTRIBUTION_KEYS = {"CREATED_TIME", "LAST_RESTART_TIME", "POD_UID", "RESTARTS",
                     "SCHEDULED_START_TIME", "STATUS"}
POD_KEYS = {"NAME", "UID", "NODE", "ROLE", "IP", "API_PORT_REST", "LAST_SEEN", "STATUS", "VERSION"}
MASKED_CREDENTIAL_KEYS = {"id", "account_group", "added_timestamp", "assigned_dcns", "api_key_preview"}
POST_METHODS = {"create_depthcache", "create_depthcaches", "add_credentials", "remove_credentials"}


# --- the four ways to call a method ------------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One way to call the client: the sync or `_async` method, with or without `debug=True`."""

    is_async: bool
    debug: bool


VARIANTS = [
    pytest.param(Variant(is_async=False, debug=False), id="sync"),
    pytest.param(Variant(is_async=False, debug=True), id="sync-debug"),
    pytest.param(Variant(is_async=True, debug=False), id="async"),
    pytest.param(Variant(is_async=True, debug=True), id="async-debug"),
]
SYNC_AND_ASYNC = [
    pytest.param(Variant(is_async=False, debug=False), id="sync"),
    pytest.param(Variant(is_async=True, debug=False), id="async"),
]
DEFAULT = Variant(is_async=False, debug=False)


def invoke(client, variant, method, **params):
    """Calls `method` (or `method_async`) as `variant` says; returns whatever the client returns."""
    function = getattr(client, method + "_async" if variant.is_async else method)
    if method not in ("get_test", "test_connection"):  # the only methods without `debug`
        params["debug"] = variant.debug
    if variant.is_async:
        return asyncio.run(function(**params))
    return function(**params)


def call(client, variant, method, **params):
    """Calls an endpoint method and checks the envelope every response must have."""
    response = invoke(client, variant, method, **params)
    check_envelope(response, method, variant)
    return response


def check_envelope(response, method, variant):
    """The checks every response passes: complete envelope, `debug` as asked, no secret."""
    endpoint = "test" if method == "get_test" else method
    assert isinstance(response, dict), f"{method}: not a dict: {response!r}"
    assert response.get("result") in ("OK", "ERROR"), f"{method}: no envelope: {response!r}"
    assert response.get("event") == endpoint.upper(), f"{method}: wrong event: {response!r}"
    if response["result"] == "ERROR":
        assert isinstance(response.get("error_id"), str) and response["error_id"].startswith("#"), response
        assert isinstance(response.get("message"), str) and response["message"], response
    text = json.dumps(response, default=str)
    assert API_SECRET not in text, f"{method}: the API secret is in the response: {text}"
    if variant.debug and method != "get_test":
        check_debug(response, endpoint, method in POST_METHODS)
    else:
        assert "debug" not in response, f"{method}: debug block without debug=True: {response!r}"


def check_debug(response, endpoint, is_post):
    """Section 3: the `debug` block restapi adds when asked."""
    debug = response.get("debug")
    assert isinstance(debug, dict), f"{endpoint}: no debug block: {response!r}"
    execution_time = debug.get("cluster_execution_time")
    assert isinstance(execution_time, (int, float)) and not isinstance(execution_time, bool), debug
    assert execution_time >= 0, debug
    # The client overwrites these two with its own measurement (13.3).
    assert isinstance(debug.get("request_time"), float), debug
    assert isinstance(debug.get("transmission_time"), float), debug
    used_pods = debug.get("used_pods")
    assert isinstance(used_pods, list) and used_pods, debug
    for pod in used_pods:
        assert isinstance(pod, list) and len(pod) == 2 and all(isinstance(x, str) and x for x in pod), debug
    assert isinstance(debug.get("url"), str), debug
    assert urllib.parse.urlsplit(debug["url"]).path == "/" + endpoint, debug
    if is_post:
        assert isinstance(debug.get("post_body"), dict), f"{endpoint}: no post_body: {debug}"


def assert_ok(response):
    assert response["result"] == "OK", response


def assert_error(response, error_id, message=None):
    assert response["result"] == "ERROR", response
    assert response["error_id"] == error_id, response
    if message is not None:
        assert response["message"] == message, response


def assert_new_range_error(response):
    """ubdcc's own error ids start at #1100 (section 14); #1100..#1199 here."""
    assert response["result"] == "ERROR", response
    assert response["error_id"].startswith("#11") and len(response["error_id"]) == 5, response


def not_found_message(market, exchange=EXCHANGE):
    return f"DepthCache '{market}' for '{exchange}' not found!"


def wait_for(poll, done, timeout, what):
    """Calls `poll()` until `done(result)`, at most `timeout` seconds; returns the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = poll()
        if done(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {timeout} s; last answer: {result!r}")
        time.sleep(0.5)


# --- books ---------------------------------------------------------------------------------------

def side_method(side):
    return "get_" + side


def check_levels(levels, side):
    """Section 6.1: `[float, float]` levels, asks ascending, bids descending."""
    assert isinstance(levels, list), levels
    for level in levels:
        assert isinstance(level, list) and len(level) == 2, level
        assert all(type(x) is float for x in level), f"levels must be JSON floats: {level!r}"
        assert level[0] > 0 and level[1] > 0, level
    prices = [price for price, _ in levels]
    expected = sorted(prices, reverse=(side == "bids"))
    assert prices == expected and len(set(prices)) == len(prices), f"{side} out of order: {prices}"


def read_side(client, variant, side, market=BOOK, **params):
    """A served read of `side`; checks the envelope, the levels and `last_update_id`."""
    response = call(client, variant, side_method(side), exchange=EXCHANGE, market=market, **params)
    assert_ok(response)
    check_levels(response[side], side)
    assert isinstance(response.get("last_update_id"), int), response
    return response


def select_levels(levels, threshold=None, limit=None):
    """UBLDC's `_select_from_depthcache` (section 6.2) on best-first levels."""
    if threshold is not None:
        selected, total = [], 0.0
        for price, quantity in levels:
            if price * quantity + total <= threshold or total == 0.0:
                selected.append([price, quantity])
                total += price * quantity
            else:
                break
        levels = selected
    return levels if limit is None else levels[:limit]


def threshold_between_levels(levels):
    """A threshold that takes two or more of `levels` and, where a level's notional allows it,
    lies more than 1 away from every cumulative notional, so that its integer truncation takes
    the same levels (a book moves between the probe and the read: the truth decides anyway)."""
    total = 0.0
    for index, (price, quantity) in enumerate(levels):
        notional = price * quantity
        if index >= 2 and notional > 4:
            return total + notional / 2
        total += notional
    return total + 0.5


def fetch_truth(market, update_id):
    """`GET /sim/truth`: `{"family","symbol","update_id","bids":[[p,q]..],"asks":[..]}` with
    decimal strings, best first, every level, right after `update_id`."""
    query = urllib.parse.urlencode({"family": SIM_FAMILY, "symbol": market, "update_id": update_id})
    url = f"{SIM_URL.rstrip('/')}/sim/truth?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            truth = json.load(answer)
    except urllib.error.HTTPError as error:
        pytest.fail(f"simulator has no truth for {market} at {update_id}: {error.read().decode()}")
    assert truth["update_id"] == update_id and truth["symbol"] == market, truth
    return truth


def truth_levels(market, update_id, side):
    """The truth's `side` at `update_id` as floats, as Python's `float()` parses the strings."""
    return [[float(price), float(quantity)] for price, quantity in fetch_truth(market, update_id)[side]]


def threshold_read(client, variant, side, threshold, sent, limit=None):
    """Reads with `threshold_volume=threshold` (which reaches the server as `sent`) and
    `limit_count=limit`, and compares with the selection from the truth at the served update id."""
    response = read_side(client, variant, side, threshold_volume=threshold, limit_count=limit)
    truth = truth_levels(BOOK, response["last_update_id"], side)
    assert response[side] == select_levels(truth, threshold=sent, limit=limit), (threshold, sent, limit)


def client_sends(threshold):
    """What the installed client puts on the wire: the compiled one truncates to int (13.3)."""
    compiled = Path(cluster_module.__file__).suffix in (".so", ".pyd")
    return int(threshold) if compiled else threshold


def info_of(client, market):
    response = call(client, DEFAULT, "get_depthcache_info", exchange=EXCHANGE, market=market)
    assert_ok(response)
    return response["depthcache_info"]


def check_dc_record(record, market, desired_quantity=1, update_interval=None, refresh_interval=None):
    """Sections 7.2 and 7.3, with ubdcc's third status `out_of_sync`."""
    assert DC_KEYS <= set(record), record
    assert record["EXCHANGE"] == EXCHANGE and record["MARKET"] == market, record
    assert record["DESIRED_QUANTITY"] == desired_quantity, record
    assert record["UPDATE_INTERVAL"] == update_interval, record
    assert record["REFRESH_INTERVAL"] == refresh_interval, record
    assert isinstance(record["DISTRIBUTION"], dict), record
    for uid, entry in record["DISTRIBUTION"].items():
        assert DISTRIBUTION_KEYS <= set(entry), entry
        assert entry["POD_UID"] == uid, entry
        assert entry["STATUS"] in STATUSES, entry


def cluster_db(client):
    response = call(client, DEFAULT, "get_cluster_info")
    assert_ok(response)
    return response["db"]


def mask_key(key):
    """Section 7.6: the `api_key_preview` of `key`."""
    if len(key) <= 6:
        return "*" * len(key)
    return key[:4] + "*" * (len(key) - 6) + key[-2:]


def stop_quietly(client, market):
    """Stops `market` if it exists; any answer is fine."""
    client.stop_depthcache(exchange=EXCHANGE, market=market)


# --- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    """The compiled client as installed (the constructor already calls `test_connection`)."""
    url = urllib.parse.urlsplit(RESTAPI_URL)
    if url.scheme != "http" or not url.hostname:
        pytest.exit(f"UBDCC_RESTAPI_URL must be http://host[:port], got {RESTAPI_URL!r}", returncode=2)
    # The client writes `http://{address}:{port}/`, so an IPv6 address needs its brackets.
    address = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    try:
        return Cluster(address=address, port=url.port or 80)
    except DepthCacheClusterNotReachableError as error:
        pytest.exit(f"no ubdcc restapi answers /test at {RESTAPI_URL}: {error}", returncode=1)


@pytest.fixture(scope="module")
def pure_client(client):
    """The same client from its pure-Python source shipped in the wheel, which sends decimal
    thresholds as they are (the compiled one truncates them to int)."""
    source = Path(unicorn_binance_local_depth_cache.__file__).with_name("cluster.py")
    if not source.exists():
        pytest.skip("the installed package ships no cluster.py source")
    spec = importlib.util.spec_from_file_location(
        "unicorn_binance_local_depth_cache._compat_pure_cluster", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Cluster(address=client.address, port=client.port)


@pytest.fixture(scope="module", autouse=True)
def our_markets_stopped(client):
    """No cache of ours before the module runs (a crashed run may have left some) or after it."""
    for market in OUR_MARKETS:
        stop_quietly(client, market)
    yield
    for market in OUR_MARKETS:
        stop_quietly(client, market)


@pytest.fixture(autouse=True)
def time_limit():
    """Fails a test that runs too long (a hung server) instead of hanging the run."""
    if not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"test exceeded {TEST_TIME_LIMIT} s: is the server hanging?")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(TEST_TIME_LIMIT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module")
def book(client):
    """`BOOK`, created by the sync client with every optional parameter null, once it is served."""
    assert_ok(call(client, DEFAULT, "create_depthcache", exchange=EXCHANGE, market=BOOK))
    wait_for(lambda: invoke(client, DEFAULT, "get_asks", exchange=EXCHANGE, market=BOOK, limit_count=1),
             lambda response: response.get("result") == "OK",
             SYNC_TIMEOUT, f"{BOOK} served")
    return BOOK


@pytest.fixture
def sim():
    if not SIM_URL:
        pytest.skip("UBDCC_SIM_URL is not set")
    return SIM_URL


# --- connection ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", SYNC_AND_ASYNC)
def test_connection(client, variant):
    assert invoke(client, variant, "test_connection") is True


@pytest.mark.parametrize("variant", SYNC_AND_ASYNC)
def test_get_test(client, variant):
    response = call(client, variant, "get_test")
    assert_ok(response)
    assert response["app"]["name"] == "ubdcc-restapi", response
    assert response["message"] == "Hello World!", response


def test_client_base_url(client):
    """13.2: `http://{address}:{port}/`, or `http://{address}/` for port 80."""
    expected = f"http://{client.address}/" if client.port == 80 else f"http://{client.address}:{client.port}/"
    assert client.url == expected


# --- missing parameters are refused by the client ------------------------------------------------

MISSING_PARAMETERS = [
    ("create_depthcache", {"exchange": EXCHANGE}),
    ("create_depthcache", {"market": BOOK}),
    ("create_depthcaches", {"exchange": EXCHANGE}),
    ("create_depthcaches", {"markets": [BOOK]}),
    ("get_asks", {"exchange": EXCHANGE}),
    ("get_bids", {"market": BOOK}),
    ("get_depthcache_info", {"exchange": EXCHANGE}),
    ("stop_depthcache", {"market": BOOK}),
    ("add_credentials", {"account_group": CREDENTIALS_GROUP, "api_key": API_KEY}),
    ("remove_credentials", {}),
]


@pytest.mark.parametrize("variant", SYNC_AND_ASYNC)
@pytest.mark.parametrize("method, params", MISSING_PARAMETERS,
                         ids=[f"{m}-{'+'.join(p) or 'nothing'}" for m, p in MISSING_PARAMETERS])
def test_missing_parameter_raises_value_error(client, variant, method, params):
    with pytest.raises(ValueError):
        invoke(client, variant, method, **params)


# --- create, duplicate, info, stop ---------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_create_depthcache_lifecycle(client, variant):
    """Create (sync: nulls in the body, async: no such keys), duplicate → #1024, info, stop → #7000."""
    created = call(client, variant, "create_depthcache", exchange=EXCHANGE, market=CREATE)
    assert_ok(created)
    if variant.debug:
        body = created["debug"]["post_body"]
        assert body["exchange"] == EXCHANGE and body["market"] == CREATE, body

    duplicate = call(client, variant, "create_depthcache", exchange=EXCHANGE, market=CREATE)
    assert_error(duplicate, "#1024", f"DepthCache '{CREATE}' for '{EXCHANGE}' already exists!")

    info = call(client, variant, "get_depthcache_info", exchange=EXCHANGE, market=CREATE)
    assert_ok(info)
    check_dc_record(info["depthcache_info"], CREATE)

    listed = call(client, variant, "get_depthcache_list")
    assert_ok(listed)
    check_dc_record(listed["depthcache_list"][EXCHANGE][CREATE], CREATE)

    assert_ok(call(client, variant, "stop_depthcache", exchange=EXCHANGE, market=CREATE))
    gone = call(client, variant, "get_depthcache_info", exchange=EXCHANGE, market=CREATE)
    assert_error(gone, "#7000", not_found_message(CREATE))
    again = call(client, variant, "stop_depthcache", exchange=EXCHANGE, market=CREATE)
    assert_error(again, "#7000", not_found_message(CREATE))
    listed = call(client, variant, "get_depthcache_list")
    assert CREATE not in listed["depthcache_list"].get(EXCHANGE, {}), listed
    wait_for(lambda: call(client, variant, "get_asks", exchange=EXCHANGE, market=CREATE),
             lambda response: response.get("error_id") == "#7000",
             PROPAGATION_TIMEOUT, f"get_asks of the stopped {CREATE} answering #7000")


@pytest.mark.parametrize("variant", VARIANTS)
def test_create_depthcaches(client, variant):
    """The list form: OK, every market created, a repeat is OK (existing markets are skipped)."""
    created = call(client, variant, "create_depthcaches", exchange=EXCHANGE, markets=BATCH,
                   desired_quantity=2)
    assert_ok(created)
    if variant.debug:
        body = created["debug"]["post_body"]
        assert body["exchange"] == EXCHANGE and body["markets"] == BATCH, body
    for market in BATCH:
        check_dc_record(info_of(client, market), market, desired_quantity=2)

    assert_ok(call(client, variant, "create_depthcaches", exchange=EXCHANGE, markets=BATCH))
    for market in BATCH:
        assert_ok(call(client, variant, "stop_depthcache", exchange=EXCHANGE, market=market))


@pytest.mark.parametrize("variant", VARIANTS)
def test_create_with_explicit_intervals(client, variant):
    created = call(client, variant, "create_depthcache", exchange=EXCHANGE, market=INTERVALS,
                   desired_quantity=1, update_interval=100, refresh_interval=3600)
    assert_ok(created)
    check_dc_record(info_of(client, INTERVALS), INTERVALS, update_interval=100, refresh_interval=3600)
    assert_ok(call(client, variant, "stop_depthcache", exchange=EXCHANGE, market=INTERVALS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_unknown_exchange_is_refused(client, variant):
    """Section 14 item 4: an ERROR with a new id, and nothing is created."""
    single = call(client, variant, "create_depthcache", exchange=UNKNOWN_EXCHANGE, market=NEVER_CREATED)
    assert_new_range_error(single)
    plural = call(client, variant, "create_depthcaches", exchange=UNKNOWN_EXCHANGE,
                  markets=[NEVER_CREATED, BOOK])
    assert_new_range_error(plural)
    listed = call(client, variant, "get_depthcache_list")
    assert UNKNOWN_EXCHANGE not in listed["depthcache_list"], listed


def test_replicas_go_to_distinct_dcns(client):
    """desired_quantity=2 on a cluster of two or more DCNs: two replicas, on two DCNs, both
    `running` once synced."""
    assert_ok(call(client, DEFAULT, "create_depthcache", exchange=EXCHANGE, market=REPLICATED,
                   desired_quantity=2))

    def both_running(record):
        statuses = [entry["STATUS"] for entry in record["DISTRIBUTION"].values()]
        return statuses == ["running", "running"]

    record = wait_for(lambda: info_of(client, REPLICATED), both_running, SYNC_TIMEOUT,
                      f"two running replicas of {REPLICATED}")
    check_dc_record(record, REPLICATED, desired_quantity=2)
    pods = cluster_db(client)["pods"]
    for uid in record["DISTRIBUTION"]:
        assert pods[uid]["ROLE"] == "ubdcc-dcn", pods.get(uid)
    assert_ok(call(client, DEFAULT, "stop_depthcache", exchange=EXCHANGE, market=REPLICATED))


# --- cluster state -------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_get_cluster_info(client, book, variant):
    response = call(client, variant, "get_cluster_info")
    assert_ok(response)
    assert isinstance(response["version"], str) and response["version"], response
    db = response["db"]
    assert isinstance(db["credentials"], list), db
    assert isinstance(db["nodes"], dict) and isinstance(db["timestamp"], (int, float)), db
    check_dc_record(db["depthcaches"][EXCHANGE][book], book)
    for uid, pod in db["pods"].items():
        assert POD_KEYS <= set(pod) and pod["UID"] == uid, pod
    roles = [pod["ROLE"] for pod in db["pods"].values()]
    assert roles.count("ubdcc-dcn") >= 2, roles
    assert "ubdcc-restapi" in roles, roles


@pytest.mark.parametrize("variant", VARIANTS)
def test_get_depthcache_list(client, book, variant):
    response = call(client, variant, "get_depthcache_list")
    assert_ok(response)
    check_dc_record(response["depthcache_list"][EXCHANGE][book], book)


@pytest.mark.parametrize("variant", VARIANTS)
def test_get_depthcache_info(client, book, variant):
    """A served book has a `running` replica on a DCN of the cluster."""
    def has_running(response):
        return any(entry["STATUS"] == "running"
                   for entry in response["depthcache_info"]["DISTRIBUTION"].values())

    response = wait_for(lambda: call(client, variant, "get_depthcache_info", exchange=EXCHANGE, market=book),
                        lambda response: response["result"] == "OK" and has_running(response),
                        PROPAGATION_TIMEOUT, f"a running replica of {book}")
    check_dc_record(response["depthcache_info"], book)
    pods = cluster_db(client)["pods"]
    for uid in response["depthcache_info"]["DISTRIBUTION"]:
        assert pods[uid]["ROLE"] == "ubdcc-dcn", pods.get(uid)


@pytest.mark.parametrize("variant", VARIANTS)
def test_info_and_stop_of_unknown_cache(client, variant):
    for method in ("get_depthcache_info", "stop_depthcache"):
        response = call(client, variant, method, exchange=EXCHANGE, market=NEVER_CREATED)
        assert_error(response, "#7000", not_found_message(NEVER_CREATED))


# --- reads ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_served_levels_match_the_truth(client, book, sim, variant, side):
    """The top levels are exactly the simulator's book at the served `last_update_id`."""
    response = read_side(client, variant, side, limit_count=TRUTH_DEPTH)
    truth = truth_levels(book, response["last_update_id"], side)
    assert response[side] == truth[:TRUTH_DEPTH]


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_limit_count(client, book, variant, side):
    assert read_side(client, variant, side, limit_count=0)[side] == []
    assert len(read_side(client, variant, side, limit_count=5)[side]) == 5
    assert len(read_side(client, variant, side)[side]) > 5


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_negative_limit_count_is_refused(client, book, variant, side):
    """Section 14 item 2: an ERROR with a new id, not Python's slice."""
    response = call(client, variant, side_method(side), exchange=EXCHANGE, market=book, limit_count=-1)
    assert_new_range_error(response)


@pytest.mark.parametrize("threshold", [0, 0.9])
@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_threshold_zero_takes_the_first_level(client, book, variant, side, threshold):
    """6.2: `threshold_volume=0` still takes the first level (the compiled client sends 0.9 as 0)."""
    if client_sends(threshold) != 0:
        pytest.skip("this client sends 0.9 as it is")
    response = read_side(client, variant, side, threshold_volume=threshold)
    assert len(response[side]) == 1, response


@pytest.mark.parametrize("form", ["int", "float"])
@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_threshold_volume(client, book, sim, variant, side, form):
    """6.2: the quote notional walk from the best level, against the truth."""
    probe = read_side(client, DEFAULT, side, limit_count=20)[side]
    threshold = threshold_between_levels(probe)
    if form == "int":
        threshold = int(threshold)
    threshold_read(client, variant, side, threshold, client_sends(threshold))


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", SYNC_AND_ASYNC)
def test_decimal_threshold_from_the_pure_python_client(pure_client, book, sim, variant, side):
    """The pure-Python client sends `threshold_volume` as a decimal (e.g. `1234.5`)."""
    probe = read_side(pure_client, DEFAULT, side, limit_count=20)[side]
    threshold = int(threshold_between_levels(probe)) + 0.5
    threshold_read(pure_client, variant, side, threshold, threshold)


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_threshold_then_limit(client, book, sim, variant, side):
    """6.2: the threshold selects (two or more levels here), then `limit_count` cuts."""
    probe = read_side(client, DEFAULT, side, limit_count=20)[side]
    threshold = int(threshold_between_levels(probe))
    threshold_read(client, variant, side, threshold, threshold, limit=1)


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_read_errors(client, variant, side):
    method = side_method(side)
    unknown = call(client, variant, method, exchange=EXCHANGE, market=NEVER_CREATED)
    assert_error(unknown, "#7000", not_found_message(NEVER_CREATED))
    empty = call(client, variant, method, exchange="", market="")
    assert_error(empty, "#1025", "Missing required parameter: exchange, market")


@pytest.mark.parametrize("side", ["asks", "bids"])
@pytest.mark.parametrize("variant", [p for p in VARIANTS if p.values[0].debug])
def test_debug_used_pods_name_real_pods(client, book, variant, side):
    """Section 3 and 14 item 8: `used_pods` names the restapi, then the DCN that served, by uid."""
    response = read_side(client, variant, side, limit_count=1)
    pods = cluster_db(client)["pods"]
    used = response["debug"]["used_pods"]
    for name, uid in used:
        assert uid in pods and pods[uid]["NAME"] == name, (used, pods)
    assert pods[used[0][1]]["ROLE"] == "ubdcc-restapi", used
    assert len(used) >= 2 and pods[used[1][1]]["ROLE"] == "ubdcc-dcn", used
    assert used[1][1] in info_of(client, book)["DISTRIBUTION"], used


# --- credentials ---------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_credentials_lifecycle(client, variant):
    """Add → id; listed masked everywhere; the secret is in no response (checked on every call);
    remove; a second remove → #1034."""
    added = call(client, variant, "add_credentials", account_group=CREDENTIALS_GROUP,
                 api_key=API_KEY, api_secret=API_SECRET)
    assert_ok(added)
    credential_id = added["id"]
    assert isinstance(credential_id, str) and credential_id, added

    expected = {"id": credential_id, "account_group": CREDENTIALS_GROUP, "api_key_preview": mask_key(API_KEY)}
    listed = call(client, variant, "get_credentials_list")
    assert_ok(listed)
    info = call(client, variant, "get_cluster_info")
    for entries in (listed["credentials"], info["db"]["credentials"]):
        ours = [entry for entry in entries if entry["id"] == credential_id]
        assert len(ours) == 1, entries
        assert set(ours[0]) == MASKED_CREDENTIAL_KEYS, ours[0]
        assert {key: ours[0][key] for key in expected} == expected, ours[0]
    call(client, variant, "get_test")  # the backup in /test must not carry the secret either
    call(client, variant, "get_depthcache_list")

    assert_ok(call(client, variant, "remove_credentials", credential_id=credential_id))
    again = call(client, variant, "remove_credentials", credential_id=credential_id)
    assert_error(again, "#1034", f"Credentials '{credential_id}' not found!")
    listed = call(client, variant, "get_credentials_list")
    assert credential_id not in [entry["id"] for entry in listed["credentials"]], listed


@pytest.mark.parametrize("variant", VARIANTS)
def test_credentials_errors(client, variant):
    unknown = call(client, variant, "remove_credentials", credential_id="no-such-" + uuid.uuid4().hex)
    assert_error(unknown, "#1034")
    invalid = call(client, variant, "add_credentials", account_group="foo", api_key=API_KEY,
                   api_secret=API_SECRET)
    assert_error(invalid, "#1031", f"Invalid account_group 'foo'. Valid groups: {VALID_GROUPS}")
