//! Asking every alive member, or one named member, each through a connection of its own.

use serde::de::DeserializeOwned;

use super::{Client, ClientError, MemberInfo};
use crate::api::observe::NodeTree;
use crate::api::remote::ApiRequest;

impl Client {
    /// The member talked to, by id, and the other alive members.
    pub async fn members_around(&self) -> Result<(String, Vec<MemberInfo>), ClientError> {
        let info = self.cluster().await?;
        let here = self.member().await;
        let me = match info.members.iter().find(|m| m.listen == here) {
            Some(m) => m.node_id.clone(),
            // the address was given in another form (a name, say): the member says who it is
            None => self.observe().await?.node_id,
        };
        let others = info
            .members
            .into_iter()
            .filter(|m| m.state == "alive" && m.node_id != me && !m.listen.is_empty())
            .collect();
        Ok((me, others))
    }

    /// A client of the alive member `node_id` (this client's settings, that member's address).
    pub async fn on_member(&self, node_id: &str) -> Result<Client, ClientError> {
        let (_, others) = self.members_around().await?;
        let member = others
            .iter()
            .find(|m| m.node_id == node_id)
            .ok_or_else(|| {
                let alive: Vec<&str> = others.iter().map(|m| m.node_id.as_str()).collect();
                ClientError::NoMember {
                    node_id: node_id.to_string(),
                    others: alive.join(","),
                }
            })?;
        self.to(member).await
    }

    /// The live actor tree of every alive member, by node id.
    pub async fn observe_all(&self) -> Result<Vec<NodeTree>, ClientError> {
        let answers: Vec<(String, Result<NodeTree, ClientError>)> =
            self.ask_each(ApiRequest::Observe).await?;
        answers.into_iter().map(|(_, tree)| tree).collect()
    }

    /// Pull ingestion on every alive member, by node id: each member's report, or why it
    /// did not give one (pull ingestion off there, say).
    pub async fn uploads_all(
        &self,
    ) -> Result<Vec<(String, Result<serde_json::Value, ClientError>)>, ClientError> {
        self.ask_each(ApiRequest::Uploads).await
    }

    /// Asks every alive member the same request: the member talked to on this connection,
    /// each other on one of its own; answers by node id.
    async fn ask_each<T: DeserializeOwned>(
        &self,
        request: ApiRequest,
    ) -> Result<Vec<(String, Result<T, ClientError>)>, ClientError> {
        let (me, others) = self.members_around().await?;
        let mut answers = vec![(me, self.ask(request.clone(), false).await)];
        for m in &others {
            let answer = match self.to(m).await {
                Ok(peer) => {
                    let answer = peer.ask(request.clone(), false).await;
                    peer.close();
                    answer
                }
                Err(e) => Err(e),
            };
            answers.push((m.node_id.clone(), answer));
        }
        answers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(answers)
    }

    /// A client of one member.
    async fn to(&self, member: &MemberInfo) -> Result<Client, ClientError> {
        let mut one = self.config.clone();
        one.nodes = vec![member.listen.clone()];
        Client::connect(one).await
    }
}
