"""simple-salesforce, unmodified, against a running sf-emulator (started by scripts/conformance.sh).

Env: SF_LOGIN_URL, SF_INSTANCE_URL, REQUESTS_CA_BUNDLE (the emulator's CA); batch size 3.
"""
import os

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceResourceNotFound,
)

LOGIN_URL = os.environ["SF_LOGIN_URL"]
INSTANCE_URL = os.environ["SF_INSTANCE_URL"]


@pytest.fixture(scope="module")
def token():
    r = requests.post(
        f"{LOGIN_URL}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": "3MVG9Emu.JWT.ClientId.natterbox",
            "client_secret": "jwt-app-secret",
            "username": "integration@acme.example",
            "password": "Passw0rd!EMUTOKEN",
        },
        timeout=10,
    )
    r.raise_for_status()
    return r.json()


@pytest.fixture(scope="module")
def sf(token):
    return Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version="59.0")


def test_token_response_shape(token):
    assert token["instance_url"] == INSTANCE_URL
    assert "expires_in" not in token
    assert isinstance(token["issued_at"], str) and len(token["issued_at"]) == 13
    assert token["token_type"] == "Bearer"


def test_query_with_parent_fields(sf):
    res = sf.query("SELECT Id, Name, Owner.Name, Account.Name FROM Contact WHERE LastName = 'Lovelace'")
    rec = res["records"][0]
    assert rec["Name"] == "Ada Lovelace"
    assert rec["Owner"]["Name"] == "Grace Hopper"
    assert rec["Account"]["Name"] == "Acme Corporation"
    assert sf.api_usage["api-usage"].total == 15000


def test_query_paging_and_query_all(sf):
    first = sf.query("SELECT Id, Name FROM Contact ORDER BY Name")
    assert first["done"] is False
    assert len(first["records"]) == 3
    more = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert len(more["records"]) == 3
    everything = sf.query_all("SELECT Id, Name FROM Contact ORDER BY Name")
    assert everything["totalSize"] == 9
    assert len(everything["records"]) == 9
    assert [r["Name"] for r in everything["records"]][:2] == ["Ada Lovelace", "Bob Jones"]


def test_search(sf):
    res = sf.search("FIND {4155550199} IN PHONE FIELDS RETURNING Contact(Id, Name), Lead(Id, Name)")
    names = [f"{r['attributes']['type']}:{r['Name']}" for r in res["searchRecords"]]
    assert names == ["Contact:Bob Jones", "Lead:Sam Lee"]


def test_malformed_query(sf):
    with pytest.raises(SalesforceMalformedRequest) as e:
        sf.query("SELECT Id FROM Contact WHERE")
    assert e.value.content[0]["errorCode"] == "MALFORMED_QUERY"


def test_expired_session():
    dead = Salesforce(instance_url=INSTANCE_URL, session_id="00Dbogus!AQ", version="59.0")
    with pytest.raises(SalesforceExpiredSession):
        dead.query("SELECT Id FROM Contact")


def test_create_update_delete(sf):
    created = sf.Contact.create({"FirstName": "Py", "LastName": "O'Thon", "Phone": "020 7946 0123"})
    assert created["success"] is True
    cid = created["id"]
    assert sf.Contact.get(cid)["Name"] == "Py O'Thon"
    assert sf.Contact.update(cid, {"Title": "Snake"}) == 204
    assert sf.Contact.get(cid)["Title"] == "Snake"
    assert sf.Contact.delete(cid) == 204
    with pytest.raises(SalesforceResourceNotFound):
        sf.Contact.get(cid)


def test_upsert(sf):
    assert sf.Contact.upsert("External_Id__c/PY-1", {"LastName": "Upserted"}) == 201
    assert sf.Contact.upsert("External_Id__c/PY-1", {"LastName": "Upserted Again"}) == 200
    res = sf.query("SELECT Name FROM Contact WHERE External_Id__c = 'PY-1'")
    assert res["records"][0]["Name"] == "Upserted Again"
    # quote_plus turns '+' into %2B; the emulator must store the literal '+'
    assert sf.Lead.upsert("External_Id__c/+14155550000", {"LastName": "Plus", "Company": "P Ltd"}) == 201
    res = sf.query("SELECT External_Id__c FROM Lead WHERE LastName = 'Plus'")
    assert res["records"][0]["External_Id__c"] == "+14155550000"
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Contact.upsert("External_Id__c/DUP-1", {"Title": "x"})


def test_describe_and_platform_event(sf):
    fields = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    assert fields["External_Id__c"]["externalId"] is True
    res = sf.Screen_Pop__e.create({"Phone__c": "+14155550123"})
    assert res["success"] is True
    assert res["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
