from channels.testing import WebsocketCommunicator

from channels_api.auth import issue_token
from tests.harness import API_KEY, SECRET_KEY
from webchannel_project.asgi import application


async def test_async_client_creates_channel(async_client):
    response = await async_client.post(
        "/webchannel/v1/channels", data=b"", content_type="application/json", headers={"x-api-key": API_KEY}
    )
    assert response.status_code == 200


async def test_communicator_receives_published_bytes(async_client):
    token = issue_token("abc", SECRET_KEY, 60).token
    communicator = WebsocketCommunicator(application, f"/webchannel/v1/channels/abc?access_token={token}")
    connected, _ = await communicator.connect()
    assert connected
    response = await async_client.post(
        "/webchannel/v1/channels/abc",
        data=b"\x00\xff",
        content_type="application/octet-stream",
        headers={"authorization": f"Bearer {token}"},
    )
    assert response.status_code == 204
    assert await communicator.receive_from() == b"\x00\xff"
    await communicator.disconnect()
