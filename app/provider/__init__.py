"""The provider portal (issue 5): referrals addressed to the provider's organization, with
only the fields release and consent allow; accept, decline, outcomes, bed counts."""
