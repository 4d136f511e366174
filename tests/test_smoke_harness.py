import httpx

from tests.harness import API_KEY


def test_shared_server_creates_a_channel(shared_server):
    response = httpx.post(f"{shared_server.url}/webchannel/v1/channels", headers={"x-api-key": API_KEY})
    assert response.status_code == 200


def test_redis_server_answers(redis_server):
    assert redis_server._answers()


def test_settings_use_test_config(settings):
    assert settings.WEBCHANNEL.channel.api_keys == (API_KEY,)
