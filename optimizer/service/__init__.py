"""``tiltloop serve``: the campaign service — REST API, scheduler with campaign leases, pull API
for labs, tokens, health and metrics. Layered above ``optimizer.campaign`` (it drives campaigns
through :func:`optimizer.campaign.service.drive`)."""
