"""Keeps a book's top 10 from a restapi's push streams and prints its best bid and ask on every
change (ubdcc_local's asyncio client; no other package needed).

    python push_book.py ws://127.0.0.1:42081/ws binance.com BTCUSDT

Set UBDCC_API_TOKEN when the restapi requires a bearer token.
"""

import asyncio
import os
import sys

from ubdcc_local import BookView, PushClient, PushClosed


async def main(url: str, exchange: str, market: str) -> None:
    book = f"{exchange}:{market}@book10"
    async with PushClient(url, token=os.environ.get("UBDCC_API_TOKEN")) as client:
        await client.subscribe(book)
        view = BookView(10)
        try:
            async for stream, data in client:
                view.apply(data)
                if "status" in data:
                    print(f"{stream}: {data['status']} {data.get('reason', '')}")
                elif view.bids and view.asks:
                    print(f"u={view.last_update_id} bid {view.bids[0]} ask {view.asks[0]}")
        except PushClosed as closed:
            print(f"closed: {closed}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    asyncio.run(main(*sys.argv[1:]))
