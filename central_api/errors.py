"""The ways central refuses a request on its merits, as one small hierarchy.

Services raise these; the API layer maps each class to one HTTP status in one place
(``central_api.api.errors``), so a service never thinks in status codes and a client
always gets ``{"detail": "<a sentence a person can act on>"}``.
"""

from __future__ import annotations


class CentralError(Exception):
    """A request central understood but will not carry out; nothing was changed."""


class SequenceGapError(CentralError):
    """A push would leave a hole in the site's ledger between what central holds and the batch.

    Accepting it would make the site's stock at central silently wrong until the missing
    events arrive, and the edge would be told everything is synced. Refusing names the
    range, so the edge (or an operator) can resend from the right place.
    """

    def __init__(self, *, site_id: str, acked_through_seq: int, batch_first_seq: int) -> None:
        self.site_id = site_id
        self.acked_through_seq = acked_through_seq
        self.batch_first_seq = batch_first_seq
        # Always "a..b", even for one seq, so a script can parse it the same way every time.
        super().__init__(
            f"site {site_id}: central holds seq through {acked_through_seq}; "
            f"batch starts at {batch_first_seq}; "
            f"missing {acked_through_seq + 1}..{batch_first_seq - 1}"
        )


class UnknownSiteError(CentralError):
    """A read about a site central has never heard from.

    Kept apart from "this site has nothing yet": an edge restored from a backup that asks
    for its watermark and gets this is most likely pointed at the wrong central.
    """

    def __init__(self, site_id: str) -> None:
        self.site_id = site_id
        super().__init__(f"site {site_id}: central has never received an event from this site")
