"""The read-only Open Referral HSDS API under ``/hsds`` (issue 17, DESIGN §7), as the
specification's ``schema/openapi.json`` describes it: anonymous, public services only,
rate-limited, cacheable (ETag), no cookies."""
