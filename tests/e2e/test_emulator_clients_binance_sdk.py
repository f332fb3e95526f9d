"""Binance's official `binance-sdk-derivatives-trading-usds-futures` drives the emulator (base URLs changed only)."""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("binance_sdk_derivatives_trading_usds_futures")
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams  # noqa: E402
from binance_common.errors import BadRequestError, UnauthorizedError  # noqa: E402
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (  # noqa: E402
    DerivativesTradingUsdsFutures,
)
from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (  # noqa: E402
    ModifyMultipleOrdersBatchOrdersParameterInner,
    PlaceMultipleOrdersBatchOrdersParameterInner,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("loopback_only"), pytest.mark.timeout(120)]


def _sdk(emu, key="k", secret="s") -> DerivativesTradingUsdsFutures:
    return DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=key, api_secret=secret, base_path=emu.rest_url, retries=0),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=emu.ws_url.rsplit("/ws", 1)[0],
                                                        reconnect_attempts=1))


@pytest.fixture(scope="module")
def rest(client_emu):
    return _sdk(client_emu).rest_api


def test_market_data(rest):
    assert rest.check_server_time().data().server_time > 0
    info = rest.exchange_information().data()
    btc = next(s for s in info.symbols if s.symbol == "BTCUSDT")
    assert btc.onboard_date > 0 and btc.delivery_date > btc.onboard_date and btc.liquidation_fee
    assert {"LIMIT", "MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"} <= set(btc.order_types)
    book = rest.order_book("BTCUSDT", limit=5).data()
    assert float(book.bids[0][0]) < float(book.asks[0][0]) and book.last_update_id > 0
    trades = rest.recent_trades_list("BTCUSDT", limit=5).data()
    assert 0 < len(trades) <= 5 and float(trades[-1].price) > 0
    agg = rest.compressed_aggregate_trades_list("BTCUSDT", limit=5).data()
    assert agg and agg[-1].a >= agg[0].a
    klines = rest.kline_candlestick_data("BTCUSDT", "1m", limit=5).data()
    assert klines and float(klines[-1][2]) >= float(klines[-1][3]) > 0
    ticker = rest.ticker24hr_price_change_statistics(symbol="BTCUSDT").data().actual_instance
    assert float(ticker.last_price) > 0 and ticker.count > 0
    assert float(rest.symbol_price_ticker(symbol="BTCUSDT").data().actual_instance.price) > 0
    bbo = rest.symbol_order_book_ticker(symbol="BTCUSDT").data().actual_instance
    assert float(bbo.bid_price) < float(bbo.ask_price)
    mark = rest.mark_price(symbol="BTCUSDT").data().actual_instance
    assert float(mark.mark_price) > 0 and mark.next_funding_time > 0
    assert rest.get_funding_rate_history(symbol="BTCUSDT").data() == []
    assert rest.open_interest("BTCUSDT").data().symbol == "BTCUSDT"
    assert rest.get_funding_rate_info().data() == []
    old = rest.old_trades_lookup("BTCUSDT", limit=3).data()
    assert len(old) == 3 and old[0].id < old[-1].id
    cont = rest.continuous_contract_kline_candlestick_data("BTCUSDT", "PERPETUAL", "1m", limit=3).data()
    assert cont and float(cont[-1][4]) > 0
    assert float(rest.symbol_price_ticker_v2(symbol="BTCUSDT").data().actual_instance.price) > 0


def test_account_views_and_settings(rest):
    acct = rest.account_information_v3().data()
    assert float(acct.total_wallet_balance) > 0 and acct.total_initial_margin is not None
    assert acct.assets[0].update_time > 0 and acct.assets[0].maint_margin is not None
    acct2 = rest.account_information_v2().data()
    assert acct2.total_maint_margin is not None and acct2.assets[0].margin_available is True
    assert float(rest.futures_account_balance_v3().data()[0].balance) > 0
    pos = rest.position_information_v3(symbol="BTCUSDT").data()
    assert pos[0].symbol == "BTCUSDT" and pos[0].position_side == "BOTH"
    assert rest.position_information_v2(symbol="BTCUSDT").data()[0].margin_type == "cross"
    assert rest.change_initial_leverage("BTCUSDT", 10).data().leverage == 10
    with pytest.raises(BadRequestError, match="-4046"):
        rest.change_margin_type("BTCUSDT", "CROSSED")
    with pytest.raises(BadRequestError, match="-4059"):
        rest.change_position_mode("false")
    assert rest.get_current_position_mode().data().dual_side_position is False
    brackets = rest.notional_and_leverage_brackets(symbol="BTCUSDT").data().actual_instance
    assert brackets.brackets[0].initial_leverage == 125
    assert rest.user_commission_rate("BTCUSDT").data().maker_commission_rate == "0.000200"


def test_orders_batch_amend_history(rest, resting_bid):
    px = resting_bid(0.99)
    o = rest.new_order("BTCUSDT", "BUY", "LIMIT", time_in_force="GTX", quantity=0.002, price=px).data()
    assert o.status == "NEW"
    m = rest.modify_order("BTCUSDT", "BUY", 0.003, round(px - 10, 1), order_id=o.order_id).data()
    assert m.orig_qty == "0.003"
    assert rest.query_current_open_order("BTCUSDT", order_id=o.order_id).data().orig_qty == "0.003"
    history = rest.get_order_modify_history("BTCUSDT", order_id=o.order_id).data()
    assert history[0].amendment.orig_qty.before == "0.002" and history[0].amendment.orig_qty.after == "0.003"
    assert rest.cancel_order("BTCUSDT", order_id=o.order_id).data().status == "CANCELED"
    # batch place / amend / cancel: JSON in the query string, percent-encoded and signed as sent
    placed = rest.place_multiple_orders([PlaceMultipleOrdersBatchOrdersParameterInner(
        symbol="BTCUSDT", side="BUY", type="LIMIT", quantity=0.002, price=round(px - 20 - i, 1), timeInForce="GTC",
        newClientOrderId=f"sdk:{i}/x") for i in range(2)]).data()
    assert [p.client_order_id for p in placed] == ["sdk:0/x", "sdk:1/x"]
    amended = rest.modify_multiple_orders([ModifyMultipleOrdersBatchOrdersParameterInner(
        symbol="BTCUSDT", side="BUY", quantity=0.004, price=round(px - 30, 1), origClientOrderId="sdk:0/x")]).data()
    assert amended[0].orig_qty == "0.004"
    cancelled = rest.cancel_multiple_orders("BTCUSDT", orig_client_order_id_list=["sdk:0/x", "sdk:1/x"]).data()
    assert [c.status for c in cancelled] == ["CANCELED", "CANCELED"]
    rest.new_order("BTCUSDT", "BUY", "LIMIT", time_in_force="GTC", quantity=0.002, price=px)
    assert rest.cancel_all_open_orders("BTCUSDT").data().code == 200
    assert rest.current_all_open_orders(symbol="BTCUSDT").data() == []
    rest.new_order("BTCUSDT", "BUY", "MARKET", quantity=0.002)
    rest.new_order("BTCUSDT", "SELL", "MARKET", quantity=0.002, reduce_only="true")
    assert {o.order_id for o in rest.all_orders("BTCUSDT").data()} >= {o.order_id}
    fills = rest.account_trade_list(symbol="BTCUSDT").data()
    assert {f.side for f in fills} >= {"BUY", "SELL"}
    assert {i.income_type for i in rest.get_income_history(symbol="BTCUSDT").data()} >= {"COMMISSION"}
    assert rest.auto_cancel_all_open_orders("BTCUSDT", 0).data().countdown_time == "0"


def test_errors_map_to_sdk_exceptions(client_emu, rest, resting_bid):
    ask = client_emu.book("BTCUSDT", 1)["asks"][0][0] * 0.1
    with pytest.raises(BadRequestError, match="-5022"):
        rest.new_order("BTCUSDT", "BUY", "LIMIT", time_in_force="GTX", quantity=0.002, price=round(ask + 5, 1))
    with pytest.raises(BadRequestError, match="-2011"):
        rest.cancel_order("BTCUSDT", order_id=123)
    with pytest.raises(BadRequestError, match="-1022"):
        _sdk(client_emu, secret="wrong").rest_api.account_information_v3()
    with pytest.raises(UnauthorizedError):
        _sdk(client_emu, key="nobody").rest_api.account_information_v3()


def test_streams_on_routed_endpoints_and_user_data(client_emu, rest, resting_bid):
    """The SDK opens /public, /market and /private connections and SUBSCRIBEs on them."""
    async def go():
        sdk = _sdk(client_emu)
        streams = await sdk.websocket_streams.create_connection()
        got: dict[str, asyncio.Future] = {}
        loop = asyncio.get_running_loop()

        def first(name):
            fut = got[name] = loop.create_future()
            return lambda m: None if fut.done() else fut.set_result(m)

        try:
            for name, handle in (
                    ("depth", await streams.diff_book_depth_streams(symbol="btcusdt", update_speed="100ms")),
                    ("bookTicker", await streams.individual_symbol_book_ticker_streams(symbol="btcusdt")),
                    ("aggTrade", await streams.aggregate_trade_streams(symbol="btcusdt")),
                    ("markPrice", await streams.mark_price_stream(symbol="btcusdt", update_speed="1s")),
                    ("kline", await streams.kline_candlestick_streams(symbol="btcusdt", interval="1m"))):
                handle.on("message", first(name))
            listen_key = rest.start_user_data_stream().data().listen_key
            user = await streams.user_data(listen_key)
            events: list = []
            user.on("message", lambda m: events.append(m.actual_instance))
            for name in ("depth", "bookTicker", "aggTrade", "markPrice", "kline"):
                await asyncio.wait_for(got[name], 10)
            assert got["depth"].result().pu is not None and got["kline"].result().k.i == "1m"
            rest.new_order("BTCUSDT", "BUY", "MARKET", quantity=0.002)
            rest.new_order("BTCUSDT", "SELL", "MARKET", quantity=0.002, reduce_only="true")
            deadline = loop.time() + 10
            while {type(e).__name__ for e in events} < {"OrderTradeUpdate", "TradeLite", "AccountUpdate"}:
                assert loop.time() < deadline, [type(e).__name__ for e in events]
                await asyncio.sleep(0.05)
        finally:
            await streams.close_connection()

    asyncio.run(go())


def test_websocket_api_order_entry(client_emu, rest, resting_bid):
    """The SDK's WebSocket API client (ws-fapi order.place / modify / status / cancel, account queries)."""
    from binance_common.configuration import ConfigurationWebSocketAPI

    async def go():
        sdk = DerivativesTradingUsdsFutures(config_ws_api=ConfigurationWebSocketAPI(
            api_key="k", api_secret="s", stream_url=client_emu.ws_url.rsplit("/ws", 1)[0] + "/ws-fapi/v1",
            reconnect_attempts=1))
        api = await sdk.websocket_api.create_connection()
        try:
            px = resting_bid(0.99)
            placed = await api.new_order(symbol="BTCUSDT", side="BUY", type="LIMIT", time_in_force="GTC",
                                         quantity=0.002, price=px, new_client_order_id="wsapi-1")
            assert placed.data().status == 200 and placed.data().result.status == "NEW"
            assert placed.rate_limits and placed.rate_limits[0].rateLimitType == "REQUEST_WEIGHT"
            modified = await api.modify_order(symbol="BTCUSDT", side="BUY", quantity=0.003, price=round(px - 1, 1),
                                              orig_client_order_id="wsapi-1")
            assert modified.data().result.orig_qty == "0.003"
            # the same order over REST
            assert rest.query_order("BTCUSDT", orig_client_order_id="wsapi-1").data().orig_qty == "0.003"
            status = await api.query_order(symbol="BTCUSDT", orig_client_order_id="wsapi-1")
            assert status.data().result.status == "NEW"
            cancelled = await api.cancel_order(symbol="BTCUSDT", orig_client_order_id="wsapi-1")
            assert cancelled.data().result.status == "CANCELED"
            balance = await api.futures_account_balance()
            assert float(balance.data().result[0].balance) > 0
            account = await api.account_information_v2()
            assert account.data().result.total_maint_margin is not None
            key = (await api.start_user_data_stream()).data().result.listen_key
            assert key == rest.start_user_data_stream().data().listen_key  # one key per account
        finally:
            await api.close_connection()

    asyncio.run(go())
